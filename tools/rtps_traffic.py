#!/usr/bin/env python3
"""What DDS sends over a network interface: RTPS traffic by submessage and writer, per second.

    sudo python3 tools/rtps_traffic.py IFACE [SECONDS] [PACKETS_FILE]
    sudo ip netns exec edgeml_drone python3 tools/rtps_traffic.py edgeml_d 10   # shaped demo

Captures the interface's packets (a raw socket: root, Linux), and prints, for each direction,
the bit rate and packet rate of each kind of RTPS message (DATA, DATA_FRAG, HEARTBEAT,
ACKNACK, NACK_FRAG, ... with the writer or reader entity id: 000100c2 is participant discovery,
000003c2/000004c2 endpoint discovery, 000300c3/000301c3 XTypes type lookup, user entities end
in 02/03/04/07), and how many DATA_FRAG fragments went out more than once. Outgoing packets are
seen after the interface's queue, so what a `tc` qdisc dropped is not among them. The later IP
fragments of a datagram bigger than a packet (a tensor in one 64 KB datagram) count with its
first; B/msg is the mean size of a datagram on the wire, Ethernet headers included. Last, how
many outgoing datagrams of several packets never finished: their first packet left but not
their last (the queue dropped a fragment, and so the whole datagram: a lost tensor).
With PACKETS_FILE, every packet is also written there as it is seen, one line each: wall-clock
time (s), direction, bytes and the datagram's submessages (to line up with a run's MCAP).
"""

from __future__ import annotations

import collections
import socket
import struct
import sys
import time

SUBMESSAGES = {0x06: "ACKNACK", 0x07: "HEARTBEAT", 0x08: "GAP", 0x12: "NACK_FRAG",
               0x13: "HEARTBEAT_FRAG", 0x15: "DATA", 0x16: "DATA_FRAG"}  # fmt: skip
# offset of the entity id that names the stream, from the submessage's body
ENTITY_OFFSET = {"DATA": 8, "DATA_FRAG": 8, "HEARTBEAT": 4, "GAP": 4, "HEARTBEAT_FRAG": 4,
                 "ACKNACK": 0, "NACK_FRAG": 0}  # fmt: skip


def submessages(rtps: bytes):
    """(kind, entity id hex, body) of each submessage that names a stream."""
    i = 20  # after the RTPS header
    while i + 4 <= len(rtps):
        kind_id, flags = rtps[i], rtps[i + 1]
        length = struct.unpack("<H" if flags & 1 else ">H", rtps[i + 2 : i + 4])[0]
        body = rtps[i + 4 : i + 4 + length] if length else rtps[i + 4 :]
        kind = SUBMESSAGES.get(kind_id)
        if kind is not None:
            off = ENTITY_OFFSET[kind]
            yield kind, body[off : off + 4].hex(), body
        if length == 0:
            return
        i += 4 + length


def capture(iface: str, seconds: float, packets_file: str | None = None) -> None:
    """Capture `iface` for `seconds` and print the table (each packet to `packets_file`)."""
    log = open(packets_file, "w", buffering=1) if packets_file else None  # noqa: SIM115
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
    sock.bind((iface, 0))
    sock.settimeout(0.5)
    bits, packets, datagrams = collections.Counter(), collections.Counter(), collections.Counter()
    fragments = collections.Counter()
    datagram_key: dict[tuple[str, bytes], tuple[str, str]] = {}  # (direction, IP id) -> key
    unfinished: dict[bytes, float] = {}  # IP id -> when the first of its packets went out
    finished = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        direction = "out" if addr[2] == socket.PACKET_OUTGOING else "in"
        flags_offset = int.from_bytes(frame[20:22], "big")
        more_fragments, offset = flags_offset & 0x2000, flags_offset & 0x1FFF
        if direction == "out" and more_fragments and not offset:  # the first of several
            unfinished[frame[18:20]] = time.monotonic()
        elif direction == "out" and offset and not more_fragments:  # the last of several
            finished += unfinished.pop(frame[18:20], None) is not None
        if offset:  # a later fragment of a big datagram: counted with its first
            key = datagram_key.get((direction, frame[18:20]), (direction, "IP fragment"))
        else:
            rtps = frame[14 + (frame[14] & 15) * 4 + 8 :]
            if rtps[:4] != b"RTPS":
                continue
            kinds = []
            for kind, entity, body in submessages(rtps):
                kinds.append(f"{kind}:{entity}")
                if kind == "DATA_FRAG" and direction == "out":
                    writer_sn_fragment = body[8:12] + body[12:20] + body[20:24]
                    fragments[(rtps[8:20], writer_sn_fragment)] += 1
            key = (direction, "+".join(dict.fromkeys(kinds)) or "other")
            datagram_key[(direction, frame[18:20])] = key
            datagrams[key] += 1
        bits[key] += 8 * len(frame)
        packets[key] += 1
        if log:
            log.write(f"{time.time():.4f} {direction} {len(frame)} {key[1]}\n")
    if log:
        log.close()
    print(f"{'dir':<4}{'kbit/s':>9}{'pkt/s':>8}{'B/msg':>8}  RTPS submessages (entity id)")
    for key, b in sorted(bits.items(), key=lambda kv: -kv[1])[:20]:
        size = f"{b / 8 / datagrams[key]:.0f}" if datagrams[key] else "-"
        rate = b / seconds / 1000
        print(f"{key[0]:<4}{rate:>9.1f}{packets[key] / seconds:>8.1f}{size:>8}  {key[1]}")
    again = sum(1 for n in fragments.values() if n > 1)
    print(f"DATA_FRAG fragments sent: {len(fragments)}, of which more than once: {again}")
    # a datagram whose first packet left in the last second may still be on its way
    lost = sum(1 for t in unfinished.values() if t < end - 1.0)
    print(f"datagrams of several packets sent: {finished + lost}, never finished: {lost}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__)
    try:
        capture(sys.argv[1], float(sys.argv[2]) if len(sys.argv) >= 3 else 10.0,
                sys.argv[3] if len(sys.argv) == 4 else None)  # fmt: skip
    except (OSError, ValueError) as exc:
        sys.exit(f"rtps_traffic: {exc}")
