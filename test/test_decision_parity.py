"""The simulator and the live drone pipeline decide alike on the same frames and the same link.

The live side is the real `DronePipeline` running the tiny model on real Fashion-MNIST frames,
driven in a time of its own as the perception node drives it: frames at their arrival, the
base station's replies (the real `TailServer`'s answers) when a fake link replaying the
simulator's trace (`TraceLink`) brings them, and the node's expire checks every
EXPIRE_PERIOD_S. The simulator is calibrated from a profile of the same model on the same
frames. Every frame must end the same way on both sides: where it was answered, at which exit,
whether its features went on the link, and whether the answer was right.

The drone computes in no time on both sides (its compute clock is stopped, the profile's
latencies are 0): with the host's real compute times, a busy machine's stalls and the
microseconds that tip the window's comparisons one way or the other would decide frames.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from edgeml_ros.core.calibration import Calibration
from edgeml_ros.core.decisions import EXPIRE_PERIOD_S
from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.core.energy import device_class
from edgeml_ros.core.pipeline import (
    DronePipeline,
    FrameResult,
    OffloadRequest,
    PipelineCounters,
    RawImage,
    ReplyError,
    TailServer,
    Where,
)
from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan
from edgeml_ros.core.profiles import profile_model
from edgeml_ros.core.traces import Trace
from edgeml_ros.policy.sim import (
    WHERE_BASE,
    WHERE_DRONE,
    WHERE_FALLBACK,
    ModelCosts,
    Scenario,
    SimConfig,
    TraceLink,
)
from edgeml_ros.policy.world import World

IMAGES = 200  # the frames replay these test images
# (from s, Mbit/s, RTT ms) for a 6272-byte tensor: fast; replies 83 ms after the send (5 ms
# before the fallback time); 89 ms (after it, before the next expire check); slower than the
# frames (fallbacks, a paced window); an outage (offloads lost); a link that takes every frame;
# one too slow again; fast
LINK = ((0, 20.0, 20), (2, 0.2, 20), (6, 0.8, 20), (8, 0.725, 20), (10, 0.0, 20), (13, 2.0, 30),
        (16, 0.6, 30), (19, 20.0, 20))  # fmt: skip
SCENARIO = Scenario(
    "parity",
    Trace(*(np.array(column, dtype=float) for column in zip(*LINK, strict=True)), "parity"),
    duration_s=23.0,
    seed=3,
)
# the tiny model has exits after blocks 0, 1 and 3: answers on the drone, or every frame offered
# to the link
PLANS = (ExecutionPlan(2, (0.9, 0.9, 0.0)), ExecutionPlan(2, (NO_EARLY_EXIT, NO_EARLY_EXIT, 0.0)))


@dataclass(frozen=True)
class Decisions:
    """How each frame ended: where (as the simulator's WHERE_*), exit, offloaded, right."""

    where: list[int]
    exit_index: list[int]
    offloaded: list[bool]
    correct: list[bool]

    def frames(self) -> list[tuple[int, int, bool, bool]]:
        """Per frame: (where, exit, offloaded, correct)."""
        return list(zip(self.where, self.exit_index, self.offloaded, self.correct, strict=True))


def raw(img: np.ndarray) -> RawImage:
    return RawImage("mono8", img.shape[0], img.shape[1], img.shape[1], False, img.tobytes())


@pytest.fixture(scope="module")
def tiny_world(bundle, fmnist_test) -> World:
    """The simulator's world for the tiny model, profiled on the frames the pipeline sees."""
    pipe = DronePipeline(bundle, PLANS[0], 0.1)  # its decoding, so that both see the same input
    frames = torch.stack([
        torch.from_numpy(pipe.decode(raw(img)).transpose(2, 0, 1))
        for img in fmnist_test.images[:IMAGES]
    ])  # fmt: skip
    config = SimConfig()
    profile, tables = profile_model(
        bundle, {"clean": frames}, np.asarray(fmnist_test.labels[:IMAGES]),
        device_class("jetson_nano"), runs=1, threads=torch.get_num_threads(),
    )  # fmt: skip
    for part in (*profile.blocks, *profile.exits):
        # the drone and the base station compute in no time
        part.latency_ms_median = part.server_latency_ms_median = 0.0
    # the scenario is clean throughout: the other conditions' tables are never read
    tables = {condition: tables["clean"] for condition in CONDITIONS}
    return World(profile, tables, config, ModelCosts(profile, config))


def world_frames(world: World) -> np.ndarray:
    """The profiled image each frame of the scenario replays."""
    return world.simulation(SCENARIO).sample


def simulated(world: World, plan: ExecutionPlan) -> Decisions:
    sim = world.simulation(SCENARIO)
    with np.errstate(divide="ignore", invalid="ignore"):  # no energy: the utility is NaN
        records = sim.run(plan, sim.frames)
    return Decisions(records.where.tolist(), records.exit_index.tolist(),
                     records.offloaded.tolist(), records.correct.tolist())  # fmt: skip


def live(
    bundle, fmnist_test, world: World, plan: ExecutionPlan
) -> tuple[Decisions, PipelineCounters, list[str]]:
    """The pipeline on the simulator's frames, driven in time order as the perception node is.

    At equal times a reply comes first, then a frame, then an expire check. Returns the
    decisions, the pipeline's counters and why the window refused the frames it refused.
    """
    sim = world.simulation(SCENARIO)  # the frames: arrival times and the images they replay
    # the messages on the link: the payload alone, or with the calibration's headers
    cal = world.profile.calibrated
    wire_bytes = cal.request_wire_bytes if cal else int
    reply_bytes = cal.reply_wire_bytes() if cal else 0
    pipe = DronePipeline(
        bundle,
        plan,
        sim.deadline_s,
        max_in_flight=world.config.max_offloads_in_flight,
        compute_clock=lambda: 0.0,
    )
    pipe.block_s = [0.0] * bundle.model.num_blocks  # as measured on the stopped clock
    pipe.head_s = [0.0] * bundle.model.num_exits
    server, link = TailServer(bundle), TraceLink(SCENARIO.trace)
    end = sim.arrival_s[-1] + 2 * sim.deadline_s
    events = [(float(t), 1, k) for k, t in enumerate(sim.arrival_s)]
    events += [(n * EXPIRE_PERIOD_S, 2, n) for n in range(math.ceil(end / EXPIRE_PERIOD_S) + 1)]
    heapq.heapify(events)
    results: dict[int, FrameResult] = {}
    offloaded = [False] * sim.frames
    while events:
        now, kind, item = heapq.heappop(events)
        if kind == 0:  # a reply
            try:
                ended = [pipe.on_reply(item, now=now)]
            except ReplyError:  # to an offload the drone no longer waits for
                ended = []
        elif kind == 1:  # a frame
            out = pipe.process(raw(fmnist_test.images[sim.sample[item]]), item, now=now)
            ended = [out]
            if isinstance(out, OffloadRequest):
                offloaded[item], ended = True, []
                reply = server.handle(out)
                reply.tail_ms = 0.0  # the modelled base station's time
                delivered, _ = link.send(now, 8.0 * wire_bytes(len(out.tensor.data)))
                reply_s = link.reply(delivered, delivered, 8.0 * reply_bytes)
                if math.isfinite(reply_s):
                    heapq.heappush(events, (reply_s, 0, reply))
        else:
            ended = pipe.expire(now=now)
        results.update((r.frame_seq, r) for r in ended if r is not None)
    assert sorted(results) == list(range(sim.frames))  # every frame ended, once
    ends = [results[k] for k in range(sim.frames)]
    labels = fmnist_test.labels[sim.sample]
    correct = [bool(r.class_id == label) for r, label in zip(ends, labels, strict=True)]
    decisions = Decisions([int(r.where) for r in ends], [r.exit_index for r in ends],
                          offloaded, correct)  # fmt: skip
    refusals = [r.reason for r, sent in zip(ends, offloaded, strict=True)
                if r.where == Where.FALLBACK and not sent]  # fmt: skip
    return decisions, pipe.counters, refusals


@dataclass(frozen=True)
class LiveRun:
    """One plan's live run: the decisions, the counters, why the window refused frames."""

    plan: ExecutionPlan
    decisions: Decisions
    counters: PipelineCounters
    refusals: list[str]


@pytest.fixture(scope="module", params=PLANS, ids=("exits", "offload_all"))
def live_run(request, bundle, fmnist_test, tiny_world) -> LiveRun:
    return LiveRun(request.param, *live(bundle, fmnist_test, tiny_world, request.param))


def mismatches(a: Decisions, b: Decisions) -> list[str]:
    """The frames on which `a` and `b` differ, described."""
    pairs = enumerate(zip(a.frames(), b.frames(), strict=True))
    fps = SimConfig().fps
    return [f"frame {k} at {k / fps:.1f} s: {x} against {y}" for k, (x, y) in pairs if x != y]


def test_the_simulator_decides_every_frame_as_the_live_pipeline(live_run, tiny_world):
    sim = simulated(tiny_world, live_run.plan)
    assert mismatches(live_run.decisions, sim) == [], "(where, exit, offloaded, right): live, sim"
    # the trace takes frames every way a frame can end
    where, offloaded = np.array(sim.where), np.array(sim.offloaded)
    assert ((where == WHERE_DRONE).sum() > 10) == (live_run.plan is PLANS[0])
    assert (where == WHERE_BASE).sum() > 10
    assert ((where == WHERE_FALLBACK) & offloaded).sum() > 10  # waited in vain
    # refused by the window, each of its limits
    assert ((where == WHERE_FALLBACK) & ~offloaded).sum() == len(live_run.refusals)
    for limit in ("offloads already in flight", "the link is busy", "the link's queue holds"):
        assert any(limit in reason for reason in live_run.refusals), limit
    assert live_run.counters.offloads_lost > 0 and 0.8 < np.mean(sim.correct) < 1.0


def test_the_parity_check_tells_another_offload_window(live_run, tiny_world):
    config = SimConfig(max_offloads_in_flight=1)
    world = World(tiny_world.profile, tiny_world.tables, config, tiny_world.costs)
    assert len(mismatches(live_run.decisions, simulated(world, live_run.plan))) > 5


@pytest.mark.parametrize("encoding", ["png", "jpeg50"])
def test_frames_shipped_as_images_end_as_the_simulator_says(
    bundle, fmnist_test, tiny_world, encoding
):
    plan = ExecutionPlan(0, (NO_EARLY_EXIT, NO_EARLY_EXIT, 0.0), encoding=encoding)
    decisions, _, _ = live(bundle, fmnist_test, tiny_world, plan)
    sim = simulated(tiny_world, plan)
    assert mismatches(decisions, sim) == [], "(where, exit, offloaded, right): live, sim"
    where = np.array(sim.where)
    assert (where == WHERE_BASE).sum() > 100 and (where == WHERE_FALLBACK).sum() > 10
    # the base station answered on the decoded frames, not on the drone's own input
    table = tiny_world.tables["clean"]
    frames = world_frames(tiny_world)
    on_frame = table.images[encoding].predictions[frames] == table.labels[frames]
    on_input = table.predictions[-1, frames] == table.labels[frames]
    at_base = where == WHERE_BASE
    np.testing.assert_array_equal(np.array(sim.correct)[at_base], on_frame[at_base])
    assert (encoding == "png") == np.array_equal(on_frame[at_base], on_input[at_base])


def test_the_simulator_decides_as_the_live_pipeline_with_headers_on_the_link(
    bundle, fmnist_test, tiny_world
):
    # requests and replies take their fields and RTPS/UDP/IP headers on the link
    wire = Calibration(compute_slowdown=1.0, request_fields_bytes=160, reply_bytes=108)
    profile = replace(tiny_world.profile, calibration=wire.as_dict())
    world = World(profile, tiny_world.tables, tiny_world.config,
                  ModelCosts(profile, tiny_world.config))  # fmt: skip
    assert world.costs.wire_bits(6272) > tiny_world.costs.wire_bits(6272) == 8 * 6272
    live_decisions, _, _ = live(bundle, fmnist_test, world, PLANS[1])
    sim = simulated(world, PLANS[1])
    assert mismatches(live_decisions, sim) == [], "(where, exit, offloaded, right): live, sim"
    assert mismatches(live_decisions, simulated(tiny_world, PLANS[1]))  # the headers matter
    where = np.array(sim.where)
    assert (where == WHERE_BASE).sum() > 10 and (where == WHERE_FALLBACK).sum() > 10
