"""langx_ros: ament_python package (works with colcon on a robot and with pip in a venv)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "langx_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Language-embedded 3D surface fields (LangScene-X) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    # The ML and ROS dependencies are installed by scripts/bootstrap.sh (pinned; torch needs
    # care on CPU machines) or by rosdep on a robot: see README.md.
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "langx_node = langx_ros.ros.node:main",
            "langx-demo = langx_ros.cli.demo:main",
            "langx-train-lqc = langx_ros.cli.train_lqc:main",
            "langx-eval = langx_ros.cli.evaluate:main",
            "langx-play = langx_ros.ros.player:main",
        ],
    },
)
