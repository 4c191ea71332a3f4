#!/usr/bin/env bash
# The main job: langx-demo (see README). Arguments pass through (langx-demo --help).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LANGX_VENV:-$ROOT/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export AMENT_PREFIX_PATH=${AMENT_PREFIX_PATH:-$VENV}
cd "$ROOT"
exec "$VENV/bin/langx-demo" "$@"
