"""Config dataclasses <-> the YAML parameter file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from langx_ros.core.config import (
    ConfigError,
    LangxConfig,
    flatten,
    from_flat,
    iter_params,
    param,
    read_parameter_file,
    to_flat,
)

REPO = Path(__file__).resolve().parents[2]


def test_shipped_yaml_lists_every_parameter_with_its_default():
    """config/langx.yaml documents every parameter, with the dataclass default as its value."""
    from langx_ros.ros.params import all_specs  # the node's full list (core + ROS layer)

    values = read_parameter_file(REPO / "config" / "langx.yaml")
    specs = {s.name: s for s in all_specs()}
    assert sorted(values) == sorted(specs), "YAML and declared parameters differ"
    for name, spec in specs.items():
        assert values[name] == spec.default, f"{name}: YAML {values[name]!r} != default {spec.default!r}"


def test_from_yaml_builds_typed_config(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "langx_node:\n  ros__parameters:\n    device: cpu\n    query:\n      threshold: 1\n      max_queries: 3\n"
        "    node:\n      world_frame: odom\n"
    )
    cfg = LangxConfig.from_yaml(p)
    assert cfg.device == "cpu"
    assert cfg.query.max_queries == 3
    assert cfg.query.threshold == 1.0 and isinstance(cfg.query.threshold, float)  # int widened
    assert cfg.models.clip_model == "ViT-B-16"  # untouched default


def test_wildcard_and_fully_qualified_sections_apply_in_order(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "/**:\n  ros__parameters:\n    device: cpu\n    query: {max_queries: 5}\n"
        "/robot/langx_node:\n  ros__parameters:\n    query: {max_queries: 7}\n"
        "other_node:\n  ros__parameters:\n    device: cuda\n"
    )
    values = read_parameter_file(p)
    assert values == {"device": "cpu", "query.max_queries": 7}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"query.treshold": 0.3}, "unknown parameter"),
        ({"query.threshold": "high"}, "expected a number"),
        ({"query.threshold": 1.5}, "must be <= 1.0"),
        ({"query.max_queries": 0}, "must be >= 1"),
        ({"query.max_queries": 2.5}, "expected an integer"),
        ({"query.max_queries": True}, "expected an integer"),
        ({"models.allow_random_weights": "yes"}, "expected true or false"),
        ({"query.canonical_phrases": "object"}, "expected a list"),
        ({"query.canonical_phrases": ["object", 3]}, "expected a string"),
        ({"query.threshold": float("nan")}, "finite"),
    ],
)
def test_bad_values_are_rejected_with_the_parameter_name(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        from_flat(LangxConfig, values)
    assert list(values)[0] in str(info.value)


def test_flat_round_trip_and_lists_are_not_shared():
    a, b = LangxConfig(), LangxConfig()
    a.query.canonical_phrases.append("x")
    assert b.query.canonical_phrases == ["object", "things", "stuff", "texture"]
    flat = to_flat(a)
    assert from_flat(LangxConfig, flat) == a


def test_every_field_must_be_documented():
    @dataclass
    class Undocumented:
        x: int = 3

    with pytest.raises(TypeError, match="no documentation"):
        list(iter_params(Undocumented))


def test_choices_are_enforced():
    @dataclass
    class WithChoice:
        mode: str = param("a", "mode", choices=("a", "b"))

    assert from_flat(WithChoice, {"mode": "b"}).mode == "b"
    with pytest.raises(ConfigError, match="one of a, b"):
        from_flat(WithChoice, {"mode": "c"})


def test_flatten_nested():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_unreadable_parameter_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_parameter_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("langx_node:\n  params: {}\n")
    with pytest.raises(ConfigError, match="no ros__parameters"):
        read_parameter_file(bad)



def test_shipped_yaml_is_generated_from_the_dataclasses():
    """config/langx.yaml is the generator's output: run `python -m langx_ros.cli.config_yaml > config/langx.yaml`."""
    from langx_ros.cli.config_yaml import render

    assert (REPO / "config" / "langx.yaml").read_text() == render()


def test_every_stage_has_a_section():
    names = {s.name.split(".")[0] for s in iter_params(LangxConfig)}
    assert {"device", "models", "segment", "features", "lqc", "field", "reconstruct", "query"} <= names
