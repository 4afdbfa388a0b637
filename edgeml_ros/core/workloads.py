"""The workloads the package ships: a model with its profile, policies and camera frames.

A workload is a committed checkpoint and its profile. Everything else follows from those two:
the camera source publishes the checkpoint's data set, the simulator emulates the drone
computer the profile names, and the controller's policies are the ones trained for the
profile's weights (policy.agents.policy_file). No torch here: the launch files read the
default workload's emulated compute slowdown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeml_ros.core.energy import device_class
from edgeml_ros.core.paths import CHECKPOINT_DIR, PROFILE_DIR


@dataclass(frozen=True)
class Workload:
    """A shipped model: its checkpoint and profile, and a line on what it is."""

    name: str
    stem: str  # file name of the checkpoint (.pt) and the profile (.json, .npz)
    description: str

    @property
    def checkpoint(self) -> Path:
        """The model's checkpoint."""
        return CHECKPOINT_DIR / f"{self.stem}.pt"

    @property
    def profile(self) -> Path:
        """The model's profile on the development machine."""
        return PROFILE_DIR / f"{self.stem}.json"

    def compute_slowdown(self) -> float:
        """How much slower the profile's drone computer runs than the machine that profiled it.

        The JSON of the profile is read as it is (core.profiles.Profile.compute_slowdown on a
        loaded profile gives the same).
        """
        profile = json.loads(self.profile.read_text())
        device = device_class(profile["device_class"]["name"])
        return device.compute_slowdown(profile["reference_ms"])


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "drone",
            "drone_scenes_resnet18",
            "torchvision ResNet-18 with three early exits on 96x96 RGB drone scenes (synthetic "
            "compositions of real Fashion-MNIST items), emulated on a Raspberry Pi 4",
        ),
        Workload(
            "fashion_mnist",
            "fashion_mnist_b_vgg",
            "B-VGG (width 0.5) with three early exits on 28x28 Fashion-MNIST, emulated on a "
            "Jetson Nano",
        ),
    )
}
DEFAULT_WORKLOAD = "drone"


def workload(name: str) -> Workload:
    """The workload `name`; ValueError listing the known ones."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return WORKLOADS[name]
