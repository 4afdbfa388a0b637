"""Bytes on the wire of one DDS message: RTPS, UDP, IP and Ethernet headers around a sample.

A sample (the serialized message: CDR encapsulation, the message's fields and its payload)
goes out in one RTPS DATA submessage when it fits one datagram, else Fast DDS splits it into
DATA_FRAG submessages, one datagram each. Every datagram carries the RTPS header and an
INFO_TIMESTAMP submessage before the data submessage; the kernel sends it as one UDP datagram,
split into IP fragments of at most the MTU, each framed by Ethernet. Sizes are the RTPS 2.x
wire format's (OMG DDSI-RTPS 2.5, section 9.4: header 20 bytes, submessage header 4,
INFO_TIMESTAMP 8, DATA 20 and DATA_FRAG 32 after their headers without inline QoS); the
largest datagram is Fast DDS's UDPv4 default, 65500 bytes, which config/fastdds_link.xml keeps
(so that an offload tensor under 64 KB goes in one datagram, fragmented by IP).
`tools/rtps_traffic.py` measures the same quantity (B/msg) on a live link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RTPS_HEADER = 20
INFO_TS = 4 + 8
DATA_SUBMESSAGE = 4 + 20
DATA_FRAG_SUBMESSAGE = 4 + 32
UDP_HEADER = 8
IPV4_HEADER = 20
ETHERNET_HEADER = 14
MTU = 1500
MAX_DATAGRAM = 65500  # Fast DDS UDPv4 maxMessageSize default


@dataclass(frozen=True)
class WireFormat:
    """How messages are framed on the link: the largest datagram and the MTU."""

    max_datagram: int = MAX_DATAGRAM
    mtu: int = MTU

    def __post_init__(self) -> None:
        if self.mtu < 68 or self.max_datagram < RTPS_HEADER + INFO_TS + DATA_FRAG_SUBMESSAGE + 1:
            raise ValueError(f"wire format: MTU {self.mtu} or datagram {self.max_datagram} "
                             "too small to carry a sample")  # fmt: skip

    def datagram_bytes(self, udp_payload: int) -> int:
        """One UDP datagram of `udp_payload` bytes on the wire: UDP, IP and Ethernet headers."""
        ip_payload = udp_payload + UDP_HEADER
        per_fragment = (self.mtu - IPV4_HEADER) // 8 * 8  # IP fragments hold multiples of 8
        fragments = max(1, math.ceil(ip_payload / per_fragment))
        return ip_payload + fragments * (IPV4_HEADER + ETHERNET_HEADER)

    def message_bytes(self, sample_bytes: int) -> int:
        """Bytes on the wire of one message whose serialized sample is `sample_bytes` long."""
        if sample_bytes < 0:
            raise ValueError(f"sample size must be >= 0, got {sample_bytes}")
        whole = RTPS_HEADER + INFO_TS + DATA_SUBMESSAGE + sample_bytes
        if whole <= self.max_datagram:
            return self.datagram_bytes(whole)
        per_frag = self.max_datagram - (RTPS_HEADER + INFO_TS + DATA_FRAG_SUBMESSAGE)
        full, rest = divmod(sample_bytes, per_frag)
        total = full * self.datagram_bytes(self.max_datagram)
        if rest:
            total += self.datagram_bytes(RTPS_HEADER + INFO_TS + DATA_FRAG_SUBMESSAGE + rest)
        return total
