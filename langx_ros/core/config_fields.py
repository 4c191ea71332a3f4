"""Configuration machinery: documented dataclass fields <-> flat (ROS-style) parameters <-> YAML.

The YAML file is a ROS 2 parameter file (``<node>: ros__parameters: {...}``) so that the node
loads it with ``--ros-args --params-file`` and a script loads the very same file with
:meth:`LangxConfig.from_yaml`. Nested sections become dotted ROS parameter names
(``query.threshold``). Every field carries its documentation (and bounds) in its metadata; the
ROS layer declares its parameters from these, so descriptions live in exactly one place.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def param(
    default: Any,
    doc: str,
    *,
    min: float | None = None,  # noqa: A002 - reads best at the call sites
    max: float | None = None,  # noqa: A002
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A documented config field. Lists get a fresh copy per instance."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """One leaf of a config tree, as a flat (dotted) parameter."""

    name: str
    type: type  # bool, int, float, str, or list (of str/int/float: see item_type)
    item_type: type | None
    default: Any
    doc: str
    min: float | None
    max: float | None
    choices: tuple[str, ...] | None


def _resolve_type(tp: Any) -> tuple[type, type | None]:
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        (item,) = typing.get_args(tp)
        return list, item
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"optional config fields are not supported: {tp}")
    return tp, None


def bounds(cls: type, name: str) -> tuple[float | None, float | None]:
    """(min, max) declared for field ``name`` of config dataclass ``cls`` (None = unbounded)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("min"), f.metadata.get("max")
    raise KeyError(f"{cls.__name__} has no field '{name}'")


def iter_params(cls: type, prefix: str = "") -> Iterator[ParamSpec]:
    """All leaves of the config dataclass ``cls`` as flat parameter specs."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from iter_params(tp, f"{name}.")
            continue
        base, item = _resolve_type(tp)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        m = f.metadata
        if "doc" not in m:
            raise TypeError(f"config field {cls.__name__}.{f.name} has no documentation")
        yield ParamSpec(name, base, item, default, m["doc"], m["min"], m["max"], m["choices"])


def _coerce(spec: ParamSpec, value: Any) -> Any:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"parameter '{spec.name}': {why} (got {value!r})")

    if spec.type is bool:
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    if spec.type is list:
        if not isinstance(value, (list, tuple)):
            raise bad("expected a list")
        return [_coerce(dataclasses.replace(spec, type=spec.item_type, item_type=None), v) for v in value]
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("expected an integer")
        out: Any = value
    elif spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("expected a number")
        out = float(value)
        if not math.isfinite(out):
            raise bad("expected a finite number")
    elif spec.type is str:
        if not isinstance(value, str):
            raise bad("expected a string")
        out = value
        if spec.choices is not None and out not in spec.choices:
            raise bad(f"expected one of {', '.join(spec.choices)}")
    else:  # pragma: no cover - guarded by the dataclass definitions
        raise bad(f"unsupported type {spec.type}")
    if spec.min is not None and out < spec.min:
        raise bad(f"must be >= {spec.min}")
    if spec.max is not None and out > spec.max:
        raise bad(f"must be <= {spec.max}")
    return out


def from_flat(cls: type[T], values: Mapping[str, Any], prefix: str = "", strict: bool = True) -> T:
    """Build ``cls`` from flat dotted values (missing keys keep their defaults).

    With ``strict``, a key under ``prefix`` that names no field raises :class:`ConfigError`
    (typos in a parameter file must not pass silently).
    """
    specs = {s.name: s for s in iter_params(cls, prefix)}
    if strict:
        unknown = sorted(k for k in values if k.startswith(prefix) and k not in specs)
        if unknown:
            raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}")

    def build(c: type, pre: str) -> Any:
        hints = typing.get_type_hints(c)
        kwargs = {}
        for f in dataclasses.fields(c):
            tp = hints[f.name]
            name = f"{pre}{f.name}"
            if dataclasses.is_dataclass(tp):
                kwargs[f.name] = build(tp, f"{name}.")
            elif name in values:
                kwargs[f.name] = _coerce(specs[name], values[name])
            else:
                kwargs[f.name] = specs[name].default
        return c(**kwargs)

    return build(cls, prefix)


def to_flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`from_flat`: a config object as flat dotted values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.update(to_flat(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = list(v) if isinstance(v, list) else v
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> flat dotted keys (the way ROS 2 reads nested parameters)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_parameter_file(path: str | Path, node_name: str = "langx_node") -> dict[str, Any]:
    """Flat parameters for ``node_name`` from a ROS 2 parameter file.

    Sections for ``/**``, ``**``, the plain node name and its fully qualified forms
    apply, in file order (later entries win), as in ROS 2.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping of node names to ros__parameters")
    out: dict[str, Any] = {}
    for key, section in doc.items():
        name = str(key)
        if name in ("/**", "**") or name.lstrip("/").split("/")[-1] == node_name:
            if not isinstance(section, Mapping) or "ros__parameters" not in section:
                raise ConfigError(f"{path}: section '{name}' has no ros__parameters")
            out.update(flatten(section["ros__parameters"] or {}))
    return out
