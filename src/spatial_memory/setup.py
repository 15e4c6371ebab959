"""spatial_memory: an ament_python ROS 2 package that is also a plain pip-installable package.

The repository root is a colcon workspace; `launch/`, `config/` and `urdf/` live at the root and are
installed into `share/spatial_memory/` from here, so `ros2 launch spatial_memory robot.launch.py` finds them.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "spatial_memory"
HERE = Path(__file__).resolve().parent
REPO = Path("..", "..")  # data_files paths must be relative to this file's folder


def _files(folder: str, *patterns: str) -> list[str]:
    """Files of a top-level repo folder, as paths relative to this setup.py."""
    found = sorted({f for p in patterns for f in glob(str(REPO / folder / p))})
    return [f for f in found if Path(f).is_file()]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Spatial memory for robots: FR3 kinematics, visual odometry, latent memory, BEV keyframe map",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", _files("launch", "*.launch.py")),
        ("share/" + PACKAGE + "/config", _files("config", "*.yaml", "*.rviz")),
        ("share/" + PACKAGE + "/urdf", _files("urdf", "*.urdf", "*.xacro")),
        ("share/" + PACKAGE + "/models", _files("models", "*.pt", "*.md", "*.png")),
    ],
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "opencv-python-headless>=4.8",
        "mujoco>=3.2",
        "matplotlib>=3.7",
        "imageio>=2.31",
        "tqdm>=4.60",
        "rosbags>=0.11",
        "torch>=2.4",
        "evo>=1.28",
        "openai>=1.30",
        "gtsam>=4.2",
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.6", "colcon-common-extensions>=0.3", "mcap>=1.1", "hypothesis>=6"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "spatial-memory = spatial_memory.cli:main",
            "fk_node = spatial_memory.ros.fk_node:main",
            "spatial_context_node = spatial_memory.ros.spatial_context_node:main",
            "sim_node = spatial_memory.ros.sim_node:main",
            "memory_node = spatial_memory.ros.memory_node:main",
            "vo_node = spatial_memory.ros.vo_node:main",
            "policy_node = spatial_memory.ros.policy_node:main",
            "goal_follower_node = spatial_memory.ros.goal_follower_node:main",
            "go_to_picture = spatial_memory.ros.go_to_picture:main",
        ],
    },
)
