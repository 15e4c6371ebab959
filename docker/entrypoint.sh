#!/usr/bin/env bash
# Source ROS 2 and the workspace built into the image, then run the command (default: the launch file).
set -eo pipefail
# shellcheck disable=SC1090,SC1091
source "/opt/ros/${ROS_DISTRO:?ROS_DISTRO is not set}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
