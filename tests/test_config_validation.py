"""Every validation error is raised before compute and names its config key."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from simulate.config import NoiseConfig
from simulate.errors import ConfigError
from simulate.models import build_model
from simulate.models.registry import MODELS, SampleConfig
from simulate.pipeline import prepare, simulation_config
from simulate.validate import validate_noise

CASES = [
    ({"scan": {"step": 0.0}}, "scan.step"),
    ({"scan": {"step": -1.0}}, "scan.step"),
    ({"microscope": {"energy": 0.0}}, "microscope.energy"),
    ({"microscope": {"energy": -3e5}}, "microscope.energy"),
    ({"detector": {"max_angle": 80.0}}, "detector.max_angle"),  # > 66 mrad at 0.1 Å sampling
    ({"detector": {"adf_outer": 200.0}}, "detector.adf_outer"),
    ({"scan": {"start": [-1.0, 0.0]}}, "scan.start"),
    ({"scan": {"end": [20.0, 5.0]}}, "scan.end"),
    ({"tilts": {"range": [-100.0, 100.0]}}, "tilts.range"),
    ({"tilts": {"angles": [-91.0, 0.0, 91.0]}}, "tilts.angles"),
    ({"truth": {"voxel_size": 0.3}}, "truth.voxel_size"),
    ({"potential": {"parametrization": "doyle"}}, "potential.parametrization"),
]


@pytest.mark.parametrize(("override", "key"), CASES)
def test_invalid_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as err:
        prepare(simulation_config(tiny_config(**override)))
    assert err.value.key == key and key in str(err.value)


@pytest.mark.parametrize("dose", [0.0, -5.0])
def test_non_positive_dose(dose):
    with pytest.raises(ConfigError, match="noise.dose"):
        validate_noise(NoiseConfig(dose=dose))
    with pytest.raises(ConfigError, match="noise.per"):
        validate_noise(NoiseConfig(per="frame"))


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="scan.stepsize"):
        simulation_config(tiny_config(scan={"stepsize": 1.0}))
    with pytest.raises(ConfigError, match="sample.size"):
        simulation_config(tiny_config(sample={"size": 1.0}))
    with pytest.raises(ConfigError, match="'optics'"):
        simulation_config({**tiny_config(), "optics": {}})


def test_empty_model_is_refused(monkeypatch):
    from ase import Atoms

    monkeypatch.setitem(MODELS, "empty", (SampleConfig, lambda cfg: Atoms()))
    with pytest.raises(ConfigError, match="at least one atom"):
        build_model({"name": "empty"})
