"""Dataset store and content-addressed cache."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_config

from simulate.pipeline import run_simulation, simulation_config
from simulate.store import MANIFEST, CorruptEntry, Dataset, cache_key, get_dataset, verify_entry


class CountingSimulator:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, cfg):
        self.calls += 1
        return run_simulation(cfg, progress=False)


def _cfg(**kw):
    return simulation_config(tiny_config(tilts={"angles": [0.0]}, **kw))


def test_second_request_does_not_simulate(tmp_path):
    sim, cfg = CountingSimulator(), _cfg()
    first = get_dataset(cfg, tmp_path, sim)
    second = get_dataset(cfg, tmp_path, sim)
    assert sim.calls == 1 and first.path == second.path
    assert np.array_equal(first.array("measurements/diffraction"),
                          second.array("measurements/diffraction"))


def test_dataset_holds_what_conventions_list(tmp_path):
    ds = get_dataset(_cfg(), tmp_path, CountingSimulator())
    for name in ("measurements/diffraction", "measurements/haadf", "geometry/euler_deg",
                 "geometry/euler_nominal_deg", "geometry/shifts", "geometry/positions",
                 "geometry/positions_nominal", "truth/positions", "truth/numbers",
                 "truth/potential"):
        assert ds.array(name).size > 0, name
    assert ds.array("measurements/diffraction").dtype == np.float32
    prov = dict(ds.group.attrs["provenance"])
    assert {"abtem", "ase", "torch", "numpy", "ptychobench"} <= set(prov["versions"])
    assert ds.config["phonons"]["seed"] == 3 and ds.key == ds.path.name
    pot = ds.group["truth/potential"]
    assert pot.attrs["voxel_size"] == 0.4 and len(pot.attrs["origin"]) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_manifest"])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage):
    sim, cfg = CountingSimulator(), _cfg()
    ds = get_dataset(cfg, tmp_path, sim)
    listed = json.loads((ds.path / MANIFEST).read_text())
    biggest = max(listed, key=lambda k: listed[k][0])
    target = ds.path / biggest
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: listed[biggest][0] // 2])
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        target.write_bytes(bytes(raw))
    else:
        (ds.path / MANIFEST).unlink()
    with pytest.raises(CorruptEntry):
        verify_entry(ds.path)
    again = get_dataset(cfg, tmp_path, sim)
    assert sim.calls == 2
    verify_entry(again.path)
    assert again.array("measurements/diffraction").sum() > 0


def test_leftover_temporary_directory_is_not_an_entry(tmp_path):
    sim, cfg = CountingSimulator(), _cfg()
    key = cache_key(cfg)
    (tmp_path / f".{key}.killed").mkdir(parents=True)  # a writer killed mid-write
    (tmp_path / f".{key}.killed" / "zarr.json").write_text("{")
    get_dataset(cfg, tmp_path, sim)
    assert sim.calls == 1 and Dataset(tmp_path / key).key == key


def test_different_configs_never_share_a_key():
    base = _cfg()
    keys = {cache_key(base)}
    changes = [("microscope", "defocus", -50.0), ("potential", "sampling", 0.08),
               ("scan", "step", 0.8), ("detector", "max_angle", 25.0), ("tilts", "count", 3),
               ("phonons", "seed", 4), ("truth", "voxel_size", 0.8), ("sample", "seed", 2),
               ("sample", "diameter", 7.0), ("microscope", "source_size", 0.2)]
    for section, field, value in changes:
        cfg = dataclasses.replace(
            base, **{section: dataclasses.replace(getattr(base, section), **{field: value})})
        keys.add(cache_key(cfg))
    assert len(keys) == len(changes) + 1
    assert cache_key(_cfg()) == cache_key(base)  # and the key is deterministic


def test_an_unwritable_cache_is_refused_before_simulating(tmp_path):
    """A cache_dir that cannot be written (here: below a file) is a named config error, raised
    before the simulator runs."""
    from simulate.errors import ConfigError

    (tmp_path / "file").write_text("not a directory")
    sim = CountingSimulator()
    with pytest.raises(ConfigError, match="cache_dir"):
        get_dataset(_cfg(), tmp_path / "file" / "cache", sim)
    assert sim.calls == 0


def test_orphans_of_a_killed_writer_are_removed_and_a_rebuild_is_reported(tmp_path, capsys):
    cfg = _cfg()
    key = cache_key(cfg)
    orphan = tmp_path / f".{key}.x1y2z3"  # what a writer killed mid-write leaves
    orphan.mkdir()
    (orphan / "part").write_text("half")
    other = tmp_path / ".0123456789abcdef01234567.q"  # another key's: not ours to remove
    other.mkdir()
    ds = get_dataset(cfg, tmp_path, CountingSimulator())
    assert not orphan.exists() and other.exists()
    victim = next(p for p in ds.path.rglob("*") if p.is_file() and p.name != MANIFEST)
    victim.write_bytes(victim.read_bytes()[:-1])  # truncated
    sim = CountingSimulator()
    again = get_dataset(cfg, tmp_path, sim)
    assert sim.calls == 1 and again.path == ds.path
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilding" in err[0] and key in err[0]


def test_concurrent_requests_of_one_key_simulate_once(tmp_path):
    """Two requests of one key at once: the second waits on the key's lock and then finds the
    entry the first wrote."""
    import threading
    import time

    class Slow(CountingSimulator):
        def __call__(self, cfg):
            time.sleep(1.0)
            return super().__call__(cfg)

    sim, cfg, out = Slow(), _cfg(), []
    threads = [threading.Thread(target=lambda: out.append(get_dataset(cfg, tmp_path, sim)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sim.calls == 1 and len(out) == 2 and out[0].path == out[1].path
