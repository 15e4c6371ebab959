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
"$PYTHON" -m pip install -q --disable-pip-version-check -e "src/spatial_memory[dev]"
echo "spatial_memory is installed: try 'spatial-memory demo' or 'python -m pytest'"
