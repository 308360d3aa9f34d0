"""Point the ROS wheels' CMake export files at this interpreter's include folders.

The PyPI ROS wheels were built in a manylinux image and their
``*__rosidl_generator_pyExport.cmake`` files name that image's Python and numpy include
folders; CMake then refuses the imported targets ("includes non-existent path").
Usage: python fix_ros_cmake.py VENV
"""
import pathlib
import re
import sys
import sysconfig

import numpy

BUILDER = re.compile(r"/opt/python/cp311-cp311/(include/python3\.11|lib/python3\.11/site-packages/numpy/_core/include)")


def main(venv: str) -> int:
    local = {
        "include/python3.11": sysconfig.get_paths()["include"],
        "lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    }
    changed = 0
    for path in pathlib.Path(venv, "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        fixed = BUILDER.sub(lambda m: local[m.group(1)], text)
        if fixed != text:
            path.write_text(fixed)
            changed += 1
    print(f"[setup] rewrote the Python include paths in {changed} CMake files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
