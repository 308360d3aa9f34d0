#!/usr/bin/env bash
# The main job from nothing: set up (seconds when nothing changed), bring up the generation and
# predictor nodes on the embedded SmolLM2-135M-Instruct, send one budgeted query, stream the
# answer, print the outcome, shut down. Arguments go to `timebill_ros demo`, e.g.
#   scripts/demo.sh "What should a robot do when its battery is low?" --budget 8 --policy kill
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
exec timebill_ros demo "$@"
