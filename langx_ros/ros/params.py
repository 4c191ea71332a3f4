"""ROS parameters <-> config dataclasses: the one place where the mapping happens.

Every field of :class:`langx_ros.core.config.LangxConfig` (the method) and of :class:`NodeConfig`
(this ROS layer, section ``node``) becomes a declared ROS parameter, with its documentation as
the descriptor's description and its bounds as the descriptor's range, so ``ros2 param
describe`` shows what config/langx.yaml documents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from langx_ros.core.config import ConfigError, LangxConfig, ParamSpec, from_flat, iter_params, param

NODE_PREFIX = "node."

# Changing these needs a restart (models are loaded once); they are declared read-only.
READ_ONLY = ("device", "models.")


@dataclass
class NodeConfig:
    """Settings of the ROS layer (parameters ``node.*``)."""

    world_frame: str = param("map", "Frame of every 3D output (clouds, markers, boxes): the frame camera poses are given in.")
    status_period: float = param(1.0, "Seconds between ~/status messages (also sent on every change).", min=0.05, max=3600.0)
    diagnostics_period: float = param(1.0, "Seconds between /diagnostics messages.", min=0.05, max=3600.0)
    warn_throttle_seconds: float = param(
        5.0, "Bad inputs of one kind are warned about at most once per this many seconds.", min=0.0, max=3600.0
    )
    max_image_pixels: int = param(
        16_777_216, "Images with more pixels than this are rejected (protects memory).", min=1, max=1_000_000_000
    )
    sync_tolerance: float = param(
        0.05, "Depth and pose messages match an image when their stamps differ by at most this (s).", min=0.0, max=10.0
    )
    capture_wait: float = param(
        0.5,
        "~/capture_keyframe waits up to this long (s) for the depth, pose and instance messages matching the newest "
        "image (from each of those topics that is in use: it has published before or has a publisher now), then captures; failing that, it takes the newest "
        "recent image that has them and is no keyframe yet, else the newest image with what matched, and says so.",
        min=0.0,
        max=10.0,
    )
    field_directory: str = param(
        "~/.cache/langx_ros/fields", "~/save_field and ~/load_field read and write named fields in this folder only."
    )
    executor_threads: int = param(
        16, "Threads of the node's executor: each ~/query waiting for its answer holds one (the answers are computed in "
        "batches by the query workers), so more threads let larger bursts be answered together; the reconstruction and "
        "captures hold one each while they run.", min=4, max=256,
    )
    camera_rate: float = param(
        0.0, "The camera's frame rate (Hz), to tell how many frames never reached the node; 0 = estimate it from the "
        "image stamps.", min=0.0, max=10_000.0,
    )
    service_queue_depth: int = param(
        1000, "Depth of the middleware queue of every service and of the action's goal/cancel/result services: requests "
        "beyond it are lost before the node sees them, so keep it above the largest burst a client may send.", min=1, max=100_000,
    )
    query_queue_limit: int = param(
        512, "~/query requests without masks in the node at once, waiting or being served; beyond it a request is refused "
        "at once ('busy: N requests queued, limit M'). Identical waiting requests are answered once.", min=1, max=100_000,
    )
    mask_queue_limit: int = param(
        6, "~/query requests with masks (a render each, on their own worker so cheap queries do not wait behind them) "
        "in the node at once, waiting or being served; beyond it a request is refused at once. Each holds an executor "
        "thread while it waits, so keep it well below node.executor_threads.", min=1, max=100_000,
    )
    query_max_wait: float = param(
        5.0, "A ~/query request that waited longer than this (s) before its turn is refused with the time it waited.",
        min=0.001, max=3600.0,
    )
    query_viz_period: float = param(
        0.1, "~/query/cloud and ~/query/markers show the newest answer at most once per this many seconds (a burst of "
        "queries publishes its last answer, not every one); 0 = publish every answer.", min=0.0, max=60.0,
    )
    load_models: str = param(
        "background", "When the models that answer queries (the text encoder of the semantics source; for 'clip' also SAM2 "
        "and open_clip) load: 'background' (a thread at start: the node answers at once, the first query is as fast as "
        "the others once loading is done), 'start' (before the node comes up), 'lazy' (at first use: the first query "
        "waits seconds).", choices=("background", "start", "lazy"),
    )
    use_tf: bool = param(
        False, "Look camera poses up in tf2 (world_frame <- image frame) instead of the 'pose' topic; needs tf2_ros."
    )


_ARRAY_TYPES = {
    str: Parameter.Type.STRING_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
}
_SCALAR_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.doc, read_only=spec.name.startswith(READ_ONLY))
    if spec.type is list:
        d.type = _ARRAY_TYPES[spec.item_type].value  # type: ignore[index]
    else:
        d.type = _SCALAR_TYPES[spec.type]
    if spec.choices:
        d.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.min is not None and spec.max is not None:
        if spec.type is float:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
        elif spec.type is int:
            d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max))]
    return d


def all_specs() -> list[ParamSpec]:
    """Every parameter the node declares (method first, then the ROS layer)."""
    return list(iter_params(LangxConfig)) + list(iter_params(NodeConfig, NODE_PREFIX))


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare all parameters on ``node`` (values from --params-file/-p override defaults).

    Returns:
        The flat parameter values.
    """
    values: dict[str, Any] = {}
    for spec in all_specs():
        if spec.type is list and not spec.default:
            p = node.declare_parameter(spec.name, _ARRAY_TYPES[spec.item_type], _descriptor(spec))  # type: ignore[index]
            values[spec.name] = p.value if p.value is not None else []
        else:
            p = node.declare_parameter(spec.name, spec.default, _descriptor(spec))
            values[spec.name] = p.value
    return values


def build_configs(values: Mapping[str, Any]) -> tuple[LangxConfig, NodeConfig]:
    """Flat values -> (method config, ROS-layer config). Raises ConfigError when invalid."""
    core = from_flat(LangxConfig, {k: v for k, v in values.items() if not k.startswith(NODE_PREFIX)})
    ros = from_flat(NodeConfig, {k: v for k, v in values.items() if k.startswith(NODE_PREFIX)}, NODE_PREFIX)
    return core, ros


def unknown_overrides(node: Node) -> list[str]:
    """Parameters that a parameter file / -p set but nobody declared (probably typos)."""
    declared = {s.name for s in all_specs()} | {"use_sim_time", "start_type_description_service"}
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    return sorted(k for k in overrides if k not in declared)


__all__ = [
    "ConfigError",
    "NodeConfig",
    "all_specs",
    "build_configs",
    "declare_parameters",
    "unknown_overrides",
]
