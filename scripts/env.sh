# Source this (bash) after scripts/setup.sh: activates the venv and the colcon workspace.
_tb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The activate and colcon scripts read unset variables: allow that even under `set -u`.
case $- in *u*) _tb_nounset=1; set +u ;; *) _tb_nounset= ;; esac
# shellcheck disable=SC1091
source "$_tb_root/.venv/bin/activate"
# Trap 3: without install/setup.bash the first publish of a timebill_msgs type fails.
# shellcheck disable=SC1091
source "$_tb_root/install/setup.bash"
export ROS_HOME="${ROS_HOME:-$_tb_root/.ros}"
# There is no `ros2 run` here: put the package's executables (timebill, timebill_ros, the nodes) on PATH.
export PATH="$_tb_root/install/timebill_ros/lib/timebill_ros:$PATH"
[ -n "$_tb_nounset" ] && set -u
unset _tb_root _tb_nounset
