# Source this (bash) for a shell with everything `make setup` built: the venv, the ROS 2 command
# line and launch (a ROS 2 install's, or the ones set-up installed into the venv), and this
# package's colcon install. Like `source /opt/ros/<distro>/setup.bash` on a ROS 2 machine:
#   source tools/setup.bash && ros2 launch edgeml_ros sim.launch.py
_edgeml_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $- in *u*) _edgeml_nounset=1 ;; *) _edgeml_nounset= ;; esac
set +u  # the setup scripts read unset variables
# shellcheck disable=SC1091
source "$_edgeml_root/.venv/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
if [ -f "$_edgeml_root/.venv/ros2_tools/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$_edgeml_root/.venv/ros2_tools/local_setup.bash"
fi
# shellcheck disable=SC1091
source "$_edgeml_root/install/setup.bash"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
if [ -n "$_edgeml_nounset" ]; then set -u; fi
unset _edgeml_root _edgeml_nounset
