"""~/save_field and ~/load_field: named fields in node.field_directory, crash-safe.

A saved field is a link to a complete version folder swapped in one rename (core/atomic), so a
name always resolves to the whole old or new field; at start, what an interrupted save left is
repaired or removed (and logged).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch
from rclpy.node import Node

from langx_interfaces.srv import FieldFile
from langx_ros.core.atomic import recover_dirs
from langx_ros.core.field.io import is_saved_field, load_field, save_field
from langx_ros.core.instances import CaptureGate
from langx_ros.ros.state import NodeState

NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")  # no leading dot: hidden names are the store's own


class FieldStore:
    """Serves the two services for ``node``; ``loaded()`` runs after a field was loaded."""

    def __init__(self, node: Node, folder: str, state: NodeState, device: torch.device, loaded: Callable[[], None],
                 qos, callback_group, gpu: CaptureGate):
        self.root = Path(os.path.expanduser(folder))
        self.state, self.device, self._loaded, self._gpu = state, device, loaded, gpu
        for what in recover_dirs(self.root, is_saved_field):
            node.get_logger().warning(f"saved fields at start: {what}")
        node.create_service(FieldFile, "~/save_field", self._on_save, qos_profile=qos, callback_group=callback_group)
        node.create_service(FieldFile, "~/load_field", self._on_load, qos_profile=qos, callback_group=callback_group)

    def path(self, name: str) -> Path:
        """The path a field name stands for (ValueError for anything but a plain name)."""
        if not NAME_RE.match(name) or name in (".", ".."):
            raise ValueError(f"invalid field name '{name[:80]}': use 1-64 letters, digits, '.', '_' or '-', not starting with '.' (no paths)")
        root = self.root.resolve()
        return root / name  # not resolved: a saved field is a link to its current version

    def _on_save(self, request: FieldFile.Request, response: FieldFile.Response) -> FieldFile.Response:
        with self.state.lock:
            f = self.state.field
        try:
            path = self.path(request.name)
            if f is None:
                raise ValueError("no field to save yet")
            with self._gpu.use():  # copies from the GPU: no CUDA graph capture meanwhile
                save_field(f, path)
        except (ValueError, OSError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message, response.path = True, f"saved {f.num_gaussians} Gaussians", str(path)
        return response

    def _on_load(self, request: FieldFile.Request, response: FieldFile.Response) -> FieldFile.Response:
        try:
            path = self.path(request.name)
            if not path.is_dir():
                raise ValueError(f"no saved field named '{request.name}' in {self.root}")
            with self._gpu.use():  # copies to the GPU: no CUDA graph capture meanwhile
                f = load_field(path, self.device)
        except (ValueError, OSError) as exc:
            response.success, response.message = False, str(exc)
            return response
        with self.state.lock:
            self.state.field = f
        self._loaded()
        response.success, response.message, response.path = True, f"loaded {f.num_gaussians} Gaussians ({f.provenance_text()})", str(path)
        return response
