"""Live runs made with known calibration terms, for the calibration's tests (ROS-free)."""

from __future__ import annotations

import numpy as np

from edgeml_ros.core.calibration import Calibration, LiveFrames, LiveRun
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.core.plan import NO_EARLY_EXIT

TRUE = Calibration(
    compute_slowdown=4.0,
    drone_scale=1.3,
    drone_call_ms=0.9,
    server_scale=1.6,  # the tails of cuts 0 and 2 differ too little to tell a fixed time
    conversion_ms=0.2,
    encode_ms=0.1,
    input_hop_ms=0.7,
    output_hop_ms=0.9,
    offload_hop_ms=3.0,
    request_fields_bytes=190,
    reply_bytes=120,
    link_burst_ms=10.0,
    link_burst_min_bytes=1600,
    drone_plan_scale=1.8,
)
MBPS, RTT_MS, RATE_HZ, DEADLINE_MS = 5.0, 20.0, 10.0, 100.0


def synthetic_run(profile, terms: Calibration, seed: int = 0, stalls: int = 5) -> LiveRun:
    """A live run whose frames were made with `terms`, with noise and a few machine stalls."""
    rng = np.random.default_rng(seed)
    drone, server = profile.times_ms(), profile.times_ms(server=True)
    n_blocks, final = len(profile.blocks), len(profile.exits) - 1
    thresholds = (0.5,) * final + (0.0,)
    rows = []
    # on the drone at every exit (early exits checked on the way), the whole model with none
    for e in range(final + 1):
        stop = drone.exit_after[e] + 1
        work = sum(drone.block_s[:stop]) + sum(drone.head_s[: e + 1])
        rows += [dict(where=Where.DRONE, cut=n_blocks, exit=e, head=work, thr=thresholds)] * 40
    work = sum(drone.block_s) + drone.head_s[final]
    no_exit = (NO_EARLY_EXIT,) * final + (0.0,)
    rows += [dict(where=Where.DRONE, cut=n_blocks, exit=final, head=work, thr=no_exit)] * 60
    # offloaded at cut 0 and 2 (answered), and fallbacks at cut 2 finishing at the final exit
    for cut in (0, 2):
        heads = [e for e in range(final) if drone.exit_after[e] < cut]
        work = sum(drone.block_s[:cut]) + sum(drone.head_s[e] for e in heads)
        rows += [dict(where=Where.BASE, cut=cut, exit=final, head=work, thr=thresholds)] * 50
    work = sum(drone.block_s[:2]) + drone.head_s[0]
    rows += [dict(where=Where.FALLBACK, cut=2, exit=final, head=work, thr=thresholds)] * 30
    columns: dict[str, list] = {name: [] for name in LiveFrames.__dataclass_fields__}
    stalled = set(rng.choice(len(rows), stalls, replace=False).tolist())
    for k, row in enumerate(rows):

        def noisy(ms: float) -> float:
            return ms * float(rng.lognormal(0.0, 0.03))

        cut, offloaded = row["cut"], row["where"] != Where.DRONE
        # a head that runs no block (cut 0) computes nothing
        head = noisy(terms.drone_ms(row["head"])) if row["head"] else 0.0
        head += 50.0 if k in stalled else 0.0
        payload = int(profile.input_bytes["fp32"] if cut == 0
                      else profile.blocks[cut - 1].output_bytes["fp32"])  # fmt: skip
        decode, age = noisy(terms.conversion_ms), noisy(terms.input_hop_ms)
        tail = transfer = encode = 0.0
        if offloaded:
            encode = noisy(terms.encode_ms)
        if row["where"] == Where.BASE:
            tail = noisy(terms.server_scale * server.finish(cut) + terms.server_call_ms)
            burst = terms.burst_bits(MBPS)  # what the token bucket lets through at once
            bits = max(0, 8 * terms.request_wire_bytes(payload) - burst)
            bits += max(0, 8 * terms.reply_wire_bytes() - burst)
            transfer = bits / (MBPS * 1e3) + RTT_MS + noisy(terms.offload_hop_ms)
        elif row["where"] == Where.FALLBACK:  # gave up when the drone's planned time said
            planned = terms.drone_plan_scale * terms.drone_ms(drone.finish(cut))
            give_up = DEADLINE_MS - 12.0 - planned - (decode + head + encode)
            transfer = max(0.5, give_up + float(rng.uniform(0.0, 10.0)))  # the next check
            tail = noisy(terms.drone_ms(drone.to_exit(cut, row["exit"])))
        total = decode + head + encode + transfer + tail
        values = {
            "stamp_s": 1000.0 + k / RATE_HZ,
            "latency_ms": age + total + noisy(terms.output_hop_ms),
            "where": int(row["where"]), "status": int(Status.OK), "cut_point": cut,
            "exit_index": row["exit"], "decode_ms": decode, "head_ms": head, "encode_ms": encode,
            "transfer_ms": transfer, "tail_ms": tail, "total_ms": total, "input_age_ms": age,
            "offload_bytes": payload if offloaded else 0, "correct": 1.0,
            "thresholds": row["thr"],
        }  # fmt: skip
        for name, value in values.items():
            columns[name].append(value)
    return LiveRun("synthetic.mcap", "mixed", "edgeml bench system", RATE_HZ, DEADLINE_MS,
                   terms.compute_slowdown, True, np.array([[999.0, MBPS, RTT_MS]]),
                   profile.weights_digest, "camera", LiveFrames.from_columns(columns),
                   terms.link_burst_ms, terms.link_burst_min_bytes)  # fmt: skip
