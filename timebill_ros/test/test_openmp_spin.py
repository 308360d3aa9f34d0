"""Importing timebill bounds how long idle OpenMP workers spin (timebill/__init__.py says why),
before anything loads libgomp, and leaves a user's own OpenMP setting alone."""
import os
import subprocess
import sys

from conftest import PKG_DIR

REPORT = """
import os, sys
sys.path.insert(0, {pkg!r})
{imports}
maps = open('/proc/self/maps').read()
print(os.environ.get('GOMP_SPINCOUNT', '-'), 'libgomp' in maps)
"""


def run_child(code: str, **env) -> list[str]:
    """The words ``code`` prints in a fresh interpreter with no OpenMP setting but ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=True).stdout.split()


def child(imports: str, **env) -> list[str]:
    return run_child(REPORT.format(pkg=str(PKG_DIR), imports=imports), **env)


def test_importing_timebill_sets_a_short_spin_before_libgomp_is_loaded():
    spin, loaded = child("import timebill")
    assert int(spin) <= 30000
    assert loaded == "False"  # libgomp reads the value when it loads: it must not be loaded yet


def test_the_spin_is_set_before_the_engine_loads_libgomp():
    # The engine's modules bring torch (and with it libgomp); the value is in place by then.
    spin, loaded = child("import timebill.engine, torch")
    assert int(spin) <= 30000 and loaded == "True"


def test_a_users_spin_count_is_kept():
    assert child("import timebill", GOMP_SPINCOUNT="123")[0] == "123"


def test_a_users_wait_policy_is_not_overridden():
    # With OMP_WAIT_POLICY set, libgomp derives the spin from it (ACTIVE: minutes, PASSIVE: none).
    assert child("import timebill", OMP_WAIT_POLICY="ACTIVE")[0] == "-"


FIRST_IMPORT = """
import builtins, sys
sys.path.insert(0, {pkg!r})
_import, seen = builtins.__import__, []
def watch(name, *a, **k):
    if name.split('.')[0] == 'timebill' and not seen:
        seen.append('libgomp' in open('/proc/self/maps').read())
    return _import(name, *a, **k)
builtins.__import__ = watch
import {module}
print(seen[0] if seen else 'never')
"""


def test_every_entry_point_imports_timebill_before_libgomp_loads():
    # Otherwise the bound is set after libgomp has read the environment, and does nothing.
    for module in ("timebill.cli", "timebill_ros.cli", "timebill_ros.generation_node", "timebill_ros.predictor_node"):
        out = run_child(FIRST_IMPORT.format(pkg=str(PKG_DIR), module=module))
        assert out[-1] == "False", f"{module}: libgomp was loaded before timebill was imported ({out[-1]})"
