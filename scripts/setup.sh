#!/usr/bin/env bash
# Set up a fresh machine for spatial_memory without ROS: system libraries for offscreen MuJoCo
# rendering (EGL) and the Python package with its dev extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libgbm1)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

PYTHON=${PYTHON:-python3}
# torch: a pinned CPU-capable build first, so the package's `torch>=2.4` installs nothing more (an unpinned
# torch from PyPI is a several-GB CUDA build). TORCH_SPEC overrides it, e.g. TORCH_SPEC="torch==2.9.1".
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
"$PYTHON" -m pip install -q --disable-pip-version-check -e "src/spatial_memory[dev]"
echo "spatial_memory is installed: try 'spatial-memory demo' or 'python -m pytest'"
