#!/usr/bin/env bash
# The whole test suite from nothing: set up (venv, pinned wheels, colcon build; seconds when
# nothing changed), then pytest over both packages. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT/timebill_ros"
exec python -m pytest test -q -p no:cacheprovider "$@"
