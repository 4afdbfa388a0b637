"""The bytes a DDS message takes on the wire (core.wire)."""

import pytest

from edgeml_ros.core.wire import WireFormat


def test_the_wire_format_adds_rtps_udp_ip_and_ethernet_headers():
    wire = WireFormat()
    rtps = 20 + 12 + 24  # RTPS header, INFO_TS, DATA
    assert wire.message_bytes(100) == 100 + rtps + 8 + 20 + 14  # one packet
    # 4326 bytes of UDP payload: IP fragments of 1480, 1480 and 1374 bytes, each framed
    assert wire.message_bytes(4270) == 4270 + rtps + 8 + 3 * (20 + 14)
    # over a datagram: DATA_FRAG submessages of up to 65432 bytes, one datagram each
    full = 65500 + 8 + 45 * (20 + 14)
    rest = 20 + 12 + 36 + (100_000 - 65_432) + 8
    assert wire.message_bytes(100_000) == full + rest + 24 * (20 + 14)
    assert WireFormat(mtu=9000).message_bytes(4270) == 4270 + rtps + 8 + 20 + 14
    with pytest.raises(ValueError, match="too small"):
        WireFormat(mtu=40)
