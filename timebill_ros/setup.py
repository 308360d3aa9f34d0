"""timebill_ros: the TimeBill core (package ``timebill``, no ROS) and its ROS 2 layer.

Built by colcon as an ament_python package; ``pip install .`` also works without ROS and
gives the ``timebill`` core and its command line.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "timebill_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"timebill": ["data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "torch>=2.4",
        "transformers>=4.56,<5.3",
        "kvpress>=0.5",
        "gguf>=0.10",
        "numpy",
        "pyyaml",
        "tqdm",
    ],
    extras_require={"plot": ["matplotlib"], "test": ["pytest", "hypothesis"]},
    zip_safe=True,
    maintainer="timebill_ros developers",
    maintainer_email="timebill@example.com",
    description="Time-budgeted LLM inference (TimeBill) for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "timebill = timebill.cli:main",
            "timebill_ros = timebill_ros.cli:main",
            "generation_node = timebill_ros.generation_node:main",
            "predictor_node = timebill_ros.predictor_node:main",
        ],
    },
)
