"""Every option of every config group, discovered from ``conf/``, sets what it exists to set.

An option whose content is lost (an emptied ``conf/tilts/pm50.yaml``) falls back silently to
the schema's defaults and still composes; these checks make that fail, naming file and key:

* every group directory is composed by ``conf/config.yaml``, whose default choices exist;
* every option file sets at least one key besides ``defaults``;
* composing the app with the option gives exactly the file's value for every key it sets
  (nested keys leaf by leaf, interpolations as written and resolvable), except the keys that a
  later default of ``conf/config.yaml`` sets on purpose (:data:`LATER_OVERRIDES`), which must
  then hold the later file's value; an experiment's ``override /group: option`` is chosen;
* the composed config passes the app's own validation (``variant_params``, ``coerce_sample``,
  ``simulation_config``, ``validate_noise``, the device names), and on the ``ci`` scale the
  model is built and the whole simulation config checked against it (``prepare``);
* an option of a group with one shared schema (microscope, scan, tilts, noise, device) sets
  every field of it and differs from the schema's defaults, unless it is listed in
  :data:`SCHEMA_DEFAULT_BY_DESIGN` (and then equals them); scale and size files differ from the
  defaults of what they set;
* what an option's name states: ``tilts/pmNN`` spans ``[-NN, NN]``, ``tilts/full`` 180°,
  ``device``, ``algorithm`` and ``sample`` options set ``name`` to their file name (and the
  latter two select their own schema), ``scale`` options ``preset``, ``noise/none`` is
  noise-free, a ``*_defocus`` microscope is defocused;
* ``size/<sample>_<scale>.yaml`` exists for every sample and scale, no other size file exists,
  and its sample keys are keys of that sample's schema;
* an experiment that sweeps runs as a multirun, and each swept value composes and validates.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from config_checks import (
    _MISSING,
    DERIVED,
    EMPTY_BY_DESIGN,
    LATER_OVERRIDES,
    SCHEMA_DEFAULT_BY_DESIGN,
    _all_options,
    _app_defaults,
    _app_schema,
    _composed_for,
    _content,
    _default_of,
    _defaults_list,
    _dotted,
    _get,
    _groups,
    _later_files,
    _options,
    _overrides,
    _path,
    _rel,
    _same,
    _set_leaves,
    _size_parts,
    _split,
    _validate,
)
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.schema import DEVICES
from reconstruct.variants import VARIANTS
from simulate.models import MODELS

# ---------------------------------------------------------------------------------------------
# the groups


@pytest.mark.parametrize("group", _groups())
def test_group_is_composed_by_the_app(group):
    order, choices = _app_defaults()
    assert group in order, f"conf/{group}/ is not in the defaults list of conf/config.yaml"
    if group not in DERIVED:
        assert _path(group, choices[group]).is_file(), \
            f"conf/config.yaml: default {group}: {choices[group]} has no conf/{group}/ file"


def test_size_follows_sample_and_scale():
    order, choices = _app_defaults()
    assert choices["size"] == "${sample}_${scale}", "conf/config.yaml: size is not per sample"
    assert order.index("size") > max(order.index("scale"), order.index("sample")), \
        "conf/config.yaml: size must come after scale (it refines the preset per sample)"
    assert order[-1] == "experiment", "conf/config.yaml: experiment must come last (it wins)"


# ---------------------------------------------------------------------------------------------
# every option


def test_exemptions_name_existing_options():
    listed = [*SCHEMA_DEFAULT_BY_DESIGN, *EMPTY_BY_DESIGN]
    stale = [o for o in listed if not _path(*_split(o)).is_file()]
    assert not stale, f"exempt options without a file under conf/: {stale}"


@pytest.mark.parametrize("option_id", [o for o in _all_options() if o not in EMPTY_BY_DESIGN])
def test_option_sets_something(option_id):
    group, option = _split(option_id)
    assert _content(group, option), f"{_rel(_path(group, option))} sets no key besides " \
                                    "`defaults`: the option would be the schema's defaults"


@pytest.mark.parametrize("option_id", _all_options())
def test_option_values_reach_the_composed_config(option_id):
    group, option = _split(option_id)
    path = _path(group, option)
    c = _composed_for(group, option)
    later = _later_files(group, c)
    for key, value in _set_leaves(group, option).items():
        where = f"{_rel(path)}: {_dotted(key)}"
        got = _get(c.hydra, key[1:]) if key[0] == "hydra" else _get(c.raw, key)
        assert got is not _MISSING, f"{where} is not in the composed config"
        winner, expected = _rel(path), value
        for later_group, later_path in later:
            overridden = _set_leaves(later_group, later_path.stem).get(key, _MISSING)
            if overridden is _MISSING:
                continue
            allowed = LATER_OVERRIDES.get(later_group, ())
            assert any(key[:len(p)] == p for p in allowed), \
                f"{where} is overridden by {_rel(later_path)} (not in LATER_OVERRIDES)"
            winner, expected = _rel(later_path), overridden
        assert _same(expected, got), \
            f"{where}: composed {got!r}, but {winner} sets {expected!r}"
        if isinstance(value, str) and "${" in value and key[0] != "hydra":
            assert _get(c.app, key) is not None, f"{where}: {value} resolves to None"
    for entry in _defaults_list(path):  # an experiment's `override /tilts: pm75`
        if isinstance(entry, dict):
            ((target, choice),) = entry.items()
            chosen = target.removeprefix("override").strip().lstrip("/")
            if chosen in c.choices:
                assert c.choices[chosen] == str(choice), \
                    f"{_rel(path)}: defaults {target}: {choice}, but {c.choices[chosen]} composed"


@pytest.mark.parametrize("option_id", _all_options())
def test_option_validates_as_the_app_does(option_id):
    group, option = _split(option_id)
    overrides = _overrides(group, option)
    try:
        _validate(overrides)
    except Exception as err:  # any refusal, named with the file
        pytest.fail(f"{_rel(_path(group, option))}: the app refuses `{' '.join(overrides)}`: "
                    f"{type(err).__name__}: {err}")


SHARED = [g for g in _groups() if _app_schema(g) is not None]


@pytest.mark.parametrize("option_id", _all_options(SHARED))
def test_option_sets_every_field_of_its_schema(option_id):
    """Options of a group with one shared schema are alternatives that sweeps swap wholesale
    (tilt_range: full, pm75, pm50, pm25): each states every field, so that none falls back to
    the schema default unseen (e.g. a lost `count: 20`). Sample and algorithm options have a
    schema each, whose extra fields default to that model's / variant's values."""
    group, option = _split(option_id)
    schema = _app_schema(group)
    assert schema is not None
    fields = {f.name for f in dataclasses.fields(schema)}
    keys = set(_content(group, option))
    assert keys <= fields, f"{_rel(_path(group, option))}: {sorted(keys - fields)} are not " \
                           f"fields of {schema.__name__}"
    assert not fields - keys, \
        f"{_rel(_path(group, option))} does not set {sorted(fields - keys)} of {schema.__name__}"


@pytest.mark.parametrize("option_id", _all_options([*SHARED, "scale", "size"]))
def test_option_differs_from_the_schema_defaults(option_id):
    """Sample and algorithm options are exempt: each has its own schema, whose defaults are
    that model's or variant's values (the file restates them). Experiments have no schema of
    their own: what they choose and sweep is checked above and below."""
    group, option = _split(option_id)
    path = _path(group, option)
    sample = _size_parts(option)[0] if group == "size" else _app_defaults()[1]["sample"]
    leaves = {k: v for k, v in _set_leaves(group, option).items()
              if k != ("preset",)}  # a scale's name, not what it sets (checked below)
    differ = [_dotted(k) for k, v in leaves.items() if not _same(v, _default_of(k, sample))]
    if option_id in SCHEMA_DEFAULT_BY_DESIGN:
        assert not differ, f"{_rel(path)} is listed as the schema default by design " \
                           f"({SCHEMA_DEFAULT_BY_DESIGN[option_id]}), but sets {differ}"
    else:
        assert differ, f"{_rel(path)}: every key it sets ({[_dotted(k) for k in leaves]}) is " \
                       "the schema default; list it in SCHEMA_DEFAULT_BY_DESIGN if intended"


# ---------------------------------------------------------------------------------------------
# what the names state


def _name_rule(group: str, option: str) -> list[str]:
    """Failures of the content that the option's name states; [] when it holds."""
    data, rel = _content(group, option), _rel(_path(group, option))
    errors = []
    if group in ("device", "algorithm", "sample") and data.get("name") != option:
        errors.append(f"{rel}: name = {data.get('name')!r}, not {option!r}")
    if group == "device" and option not in DEVICES:
        errors.append(f"{rel}: {option!r} is not a device of {DEVICES}")
    if group in ("algorithm", "sample"):
        known = VARIANTS if group == "algorithm" else MODELS
        if option not in known:
            errors.append(f"{rel}: {option!r} is not registered ({sorted(known)})")
        defaults, schema_name = _defaults_list(_path(group, option)), f"{option}_schema"
        if not (schema_name in defaults and "_self_" in defaults
                and defaults.index(schema_name) < defaults.index("_self_")):
            errors.append(f"{rel}: defaults {defaults} are not [{schema_name}, _self_] (its "
                          "own schema, then its values over the schema's)")
    if group == "scale" and data.get("preset") != option:
        errors.append(f"{rel}: preset = {data.get('preset')!r}, not {option!r}")
    if group == "tilts":
        m = re.fullmatch(r"pm(\d+)", option)
        if m or option == "full":
            # angles or euler would win over range + count (TiltConfig)
            if data.get("angles") is not None or data.get("euler") is not None:
                errors.append(f"{rel}: sets angles/euler, which win over its range")
        if m:
            half = float(m.group(1))
            if not _same([-half, half], data.get("range")):
                errors.append(f"{rel}: range = {data.get('range')!r}, not [-{half}, {half}]")
        if option == "full":
            # 180° about y; +90° is the mirror image of -90°, so the end point is left out
            if not _same([-90.0, 90.0], data.get("range")) or data.get("endpoint") is not False:
                errors.append(f"{rel}: range = {data.get('range')!r}, endpoint = "
                              f"{data.get('endpoint')!r}, not [-90, 90) (180°, +90° omitted)")
    if group == "noise" and option == "none" and data.get("dose") != math.inf:
        errors.append(f"{rel}: dose = {data.get('dose')!r}, not inf (noise-free)")
    if group == "noise" and option == "poisson":
        dose = data.get("dose")
        if not (isinstance(dose, int | float) and 0 < dose < math.inf):
            errors.append(f"{rel}: dose = {dose!r}, not a finite dose")
    if group == "microscope" and option.endswith("_defocus") and not data.get("defocus"):
        errors.append(f"{rel}: defocus = {data.get('defocus')!r}, but the name says defocused")
    if group == "size":
        sample = _size_parts(option)[0]
        schema = MODELS[sample][0]
        fields = {f.name for f in dataclasses.fields(schema)}
        unknown = sorted(set(data.get("sample", {})) - fields)
        if unknown:
            errors.append(f"{rel}: sample keys {unknown} are not fields of {schema.__name__}")
    return errors


def _has_name_rule(group: str, option: str) -> bool:
    return group in ("device", "algorithm", "sample", "scale", "size") or (
        group == "tilts" and (option == "full" or re.fullmatch(r"pm\d+", option) is not None)
    ) or (group == "noise" and option in ("none", "poisson")) or (
        group == "microscope" and option.endswith("_defocus"))


@pytest.mark.parametrize("option_id", [o for o in _all_options() if _has_name_rule(*_split(o))])
def test_option_is_what_its_name_says(option_id):
    errors = _name_rule(*_split(option_id))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("sample", _options("sample"))
def test_every_sample_has_a_size_for_every_scale(sample):
    missing = [f"conf/size/{sample}_{s}.yaml" for s in _options("scale")
               if not _path("size", f"{sample}_{s}").is_file()]
    assert not missing, f"sample {sample!r} has no size for a preset: missing {missing}"


# ---------------------------------------------------------------------------------------------
# experiments


def _sweep(option: str) -> dict[str, list[str]]:
    """An experiment's swept parameters and their values, as Hydra's basic sweeper reads them."""
    params = _get(_content("experiment", option), ("hydra", "sweeper", "params"))
    if params is _MISSING or not params:
        return {}
    parser = OverridesParser.create()
    swept = {}
    for key, values in params.items():
        (ov,) = parser.parse_overrides([f"{key}={values}"])
        swept[str(key)] = list(ov.sweep_string_iterator()) if ov.is_sweep_override() \
            else [str(ov.value())]
    return swept


@pytest.mark.parametrize("option", [o for o in _options("experiment") if _sweep(o)])
def test_experiment_sweep_values_compose_and_validate(option):
    rel = _rel(_path("experiment", option))
    mode = _get(_content("experiment", option), ("hydra", "mode"))
    mode = None if mode is _MISSING else mode
    assert mode == "MULTIRUN", f"{rel} sweeps but hydra.mode = {mode!r}: a plain run ignores it"
    for key, values in _sweep(option).items():
        for value in values:
            if key in _groups():
                assert _path(key, value).is_file(), f"{rel}: sweeps {key}={value}: no such file"
            overrides = (f"experiment={option}", f"{key}={value}")
            try:
                _validate(overrides)
            except Exception as err:  # any refusal, named with the file
                pytest.fail(f"{rel}: swept `{' '.join(overrides)}` is refused: "
                            f"{type(err).__name__}: {err}")
