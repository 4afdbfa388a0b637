"""Energy model (a model, not a measurement): joules per frame from compute and radio time.

E = P_compute * t_compute + P_tx * t_tx + P_rx * t_wait_for_reply

The power tables below are typical figures from public sources, cited per entry. Real energy
depends on the board, clocks, radio and link; measure on the target to replace these numbers
(`edgeml profile --device-class ...` records which table a profile uses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DeviceEnergy:
    """Power draw of a device class, in watts, with where the numbers come from."""

    name: str
    compute_w: float
    radio_tx_w: float
    radio_rx_w: float
    compute_slowdown: float
    source: str

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
        compute_slowdown=4.0,
        source=(
            "NVIDIA Jetson Nano Developer Kit: 10 W (MAXN) and 5 W power modes (NVIDIA Jetson "
            "Nano data sheet); idle about 1.25 W (NVIDIA developer forum measurements). Radio: "
            "Halperin et al., HotPower 2010. compute_slowdown is a rough CPU ratio against a "
            "desktop core, for emulation only."
        ),
    ),
    "raspberry_pi_4": DeviceEnergy(
        name="raspberry_pi_4",
        compute_w=6.4,
        radio_tx_w=_WIFI_TX_W,
        radio_rx_w=_WIFI_RX_W,
        compute_slowdown=8.0,
        source=(
            "Raspberry Pi 4 Model B: about 2.7 W idle and 6.4 W with all four cores loaded "
            "(pidramble.com power consumption benchmarks, 540 mA and 1280 mA at 5 V). Radio: "
            "Halperin et al., HotPower 2010. compute_slowdown is a rough CPU ratio against a "
            "desktop core, for emulation only."
        ),
    ),
}


def device_class(name: str) -> DeviceEnergy:
    """Look up a device class by name."""
    if name not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {name!r}; known: {', '.join(DEVICE_CLASSES)}")
    return DEVICE_CLASSES[name]
