#!/usr/bin/env bash
# Run the test suite in the project's environment (scripts/bootstrap.sh makes it).
# ROS traffic stays on loopback; each integration test picks its own ROS_DOMAIN_ID.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LANGX_VENV:-$ROOT/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$(mktemp -d)/ros_logs}
export AMENT_PREFIX_PATH=${AMENT_PREFIX_PATH:-$VENV}
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q -ra "$@"  # paths default to pytest.ini testpaths
