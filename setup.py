"""pip install of the ROS-free core (models, runtime, codec, policies, CLI): `pip install -e .`.

For machines without ROS, e.g. a GPU server for training.
On a ROS 2 machine colcon builds this package with CMake (ament_cmake; see CMakeLists.txt),
which also generates the messages and installs the nodes; this file is not used there.
"""

from setuptools import find_packages, setup

setup(
    name="edgeml_ros",
    version="0.1.0",
    description="EdgeML for ROS 2: early-exit, partition-offloaded DNNs steered by RL",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["edgeml_ros", "edgeml_ros.*"]),
    package_data={
        "edgeml_ros": [
            "checkpoints/*.pt",
            "profiles/*.json",
            "profiles/*.npz",
            "policies/*.json",
            "policies/*.zip",
            "policies/*.pkl",
            "policies/*.npz",
        ]
    },
    install_requires=["numpy", "torch", "torchvision", "tqdm", "zstandard", "matplotlib"],
    extras_require={"rl": ["gymnasium", "stable-baselines3"]},
    entry_points={"console_scripts": ["edgeml = edgeml_ros.cli:main"]},
)
