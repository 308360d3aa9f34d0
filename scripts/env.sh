# Source this (bash) after scripts/setup.sh: activates the venv and the colcon workspace.
_tb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_tb_root/.venv/bin/activate"
# Trap 3: without install/setup.bash the first publish of a timebill_msgs type fails.
# shellcheck disable=SC1091
source "$_tb_root/install/setup.bash"
export ROS_HOME="${ROS_HOME:-$_tb_root/.ros}"
unset _tb_root
# There is no `ros2 run` here: put the package's executables (timebill, timebill_ros, the nodes) on PATH.
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/install/timebill_ros/lib/timebill_ros:$PATH"
