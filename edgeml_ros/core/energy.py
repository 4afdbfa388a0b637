"""Drone computers: the energy model and the compute speed of each device class.

Energy is a model, not a measurement: joules per frame from compute and radio time,

E = P_compute * t_compute + P_tx * t_tx + P_rx * t_wait_for_reply

with typical power figures from public sources, cited per entry. Real energy depends on the
board, clocks, radio and link; measure on the target to replace these numbers.

Compute speed: each device class cites a published time of one reference model
(REFERENCE_MODEL) on that device. `edgeml profile` times the same model on the machine it
profiles on (`Profile.reference_ms`); the ratio is how much slower the emulated drone computes
(`compute_slowdown`), which the simulator applies to the profiled times and the demo's
perception node pads its compute to. A device faster than the profiling machine cannot be
emulated by padding: its slowdown is 1, and the emulated drone is slower than the real one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# The model whose published time on a device sets its emulated compute speed.
REFERENCE_MODEL = "torchvision resnet18, one 1x3x224x224 frame"


@dataclass(frozen=True)
class DeviceEnergy:
    """A drone computer: power draw in watts, and the reference model's time on it.

    `source` says where each number comes from.
    """

    name: str
    compute_w: float
    radio_tx_w: float
    radio_rx_w: float
    reference_ms: float
    source: str

    def compute_slowdown(self, reference_ms_here: float) -> float:
        """Times slower than a machine running the reference model in `reference_ms_here`.

        At least 1: padding cannot make the emulated drone faster than the machine it runs on.
        """
        if not reference_ms_here > 0:
            raise ValueError(f"reference time must be > 0 ms, not {reference_ms_here}")
        return max(1.0, self.reference_ms / reference_ms_here)

    def frame_energy_j(self, compute_s: float, tx_s: float = 0.0, wait_s: float = 0.0) -> float:
        """Modelled energy of one frame: active compute, transmit, and receive/wait time."""
        return self.compute_w * compute_s + self.radio_tx_w * tx_s + self.radio_rx_w * wait_s

    def as_dict(self) -> dict:
        """The table entry as plain data (stored in profiles)."""
        return asdict(self)


# Wi-Fi (802.11n) radio power from Halperin et al., "Demystifying 802.11n power consumption",
# HotPower 2010: about 1.28 W transmitting and 0.94 W receiving (Intel 5300, one stream).
_WIFI_TX_W, _WIFI_RX_W = 1.28, 0.94

DEVICE_CLASSES: dict[str, DeviceEnergy] = {
    "jetson_nano": DeviceEnergy(
        name="jetson_nano",
        compute_w=10.0,
        radio_tx_w=_WIFI_TX_W,
        radio_rx_w=_WIFI_RX_W,
        reference_ms=34.7,
        source=(
            "NVIDIA Jetson Nano Developer Kit: 10 W (MAXN) and 5 W power modes (NVIDIA Jetson "
            "Nano data sheet); idle about 1.25 W (NVIDIA developer forum measurements). Radio: "
            "Halperin et al., HotPower 2010. Reference: resnet18 at 224x224, batch 1, 34.7 ms "
            "with PyTorch (fp16) on the Nano's GPU (NVIDIA-AI-IOT/torch2trt, "
            "docs/benchmarks/jetson_nano.md)."
        ),
    ),
    "raspberry_pi_4": DeviceEnergy(
        name="raspberry_pi_4",
        compute_w=6.4,
        radio_tx_w=_WIFI_TX_W,
        radio_rx_w=_WIFI_RX_W,
        reference_ms=100.3,
        source=(
            "Raspberry Pi 4 Model B: about 2.7 W idle and 6.4 W with all four cores loaded "
            "(pidramble.com power consumption benchmarks, 540 mA and 1280 mA at 5 V). Radio: "
            "Halperin et al., HotPower 2010. Reference: resnet18 at 224x224, batch 1, fp32, "
            "100.3 ms model time on the CPU (PyTorch tutorial 'Real Time Inference on "
            "Raspberry Pi 4', pytorch/tutorials intermediate_source/realtime_rpi.rst)."
        ),
    ),
}


def device_class(name: str) -> DeviceEnergy:
    """Look up a device class by name."""
    if name not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {name!r}; known: {', '.join(DEVICE_CLASSES)}")
    return DEVICE_CLASSES[name]
