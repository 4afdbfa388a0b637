#!/usr/bin/env bash
# Run a command with the venv and the colcon install of edgeml_ros on the path, talking DDS on
# this host only (tests and demos never leave loopback).
set -eo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
source "$root/.venv/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export COLCON_TRACE=${COLCON_TRACE:-}
# the ROS 2 command line and launch, where tools/bootstrap.sh installed them into the venv
if [ -f "$root/.venv/ros2_tools/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$root/.venv/ros2_tools/local_setup.bash"
fi
# shellcheck disable=SC1091
source "$root/install/setup.bash"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export PYTHONUNBUFFERED=1
exec "$@"
