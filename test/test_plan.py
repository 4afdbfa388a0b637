import numpy as np
import pytest

from edgeml_ros.core.plan import (
    NO_EARLY_EXIT,
    ExecutionPlan,
    check_exit_thresholds,
    check_plan,
    exit_enabled,
    with_tensor_transport,
)
from edgeml_ros.policy.world import World


def test_check_plan_names_the_field(bundle):
    model = bundle.model
    blocks, exits = model.num_blocks, model.num_exits
    with pytest.raises(ValueError, match="cut_point: 9 outside"):
        check_plan(ExecutionPlan(9, (0.5,) * exits), blocks, exits)
    with pytest.raises(
        ValueError, match=r"exit_thresholds: needs 3 values \(one per exit\), got 2"
    ):
        check_plan(ExecutionPlan(1, (0.5, 0.5)), blocks, exits)
    with pytest.raises(ValueError, match="exit_thresholds: values must be finite"):
        check_plan(ExecutionPlan(1, (float("nan"),) * exits), blocks, exits)
    with pytest.raises(ValueError, match="exit_rule: 'margin' unknown; known: max_prob, entropy"):
        check_plan(ExecutionPlan(1, (0.5,) * exits, "margin"), blocks, exits)
    with pytest.raises(ValueError, match="compression: 'lz4' unknown"):
        check_plan(ExecutionPlan(1, (0.5,) * exits, compression="lz4"), blocks, exits)
    for share in (-0.01, 0.5, float("nan")):
        with pytest.raises(ValueError, match=r"audit_share: .* outside \[0, 0.2\]"):
            check_plan(ExecutionPlan(1, (0.5,) * exits, audit_share=share), blocks, exits)
    check_plan(ExecutionPlan(1, (0.5,) * exits, audit_share=0.02), blocks, exits)
    check_plan(ExecutionPlan(blocks, (NO_EARLY_EXIT,) * exits, "entropy", "int8"), blocks, exits)


def test_thresholds_alone_are_checked_without_the_field_name():
    with pytest.raises(ValueError, match=r"^needs 4 values \(one per exit\), got 3$"):
        check_exit_thresholds([0.5, 0.5, 0.0], 4)
    with pytest.raises(ValueError, match="finite and >= 0"):
        check_exit_thresholds([0.5, -0.1, 0.5, 0.0], 4)


def test_a_threshold_above_one_disables_an_exit():
    assert exit_enabled(1.0) and exit_enabled(0.0) and not exit_enabled(NO_EARLY_EXIT)
    np.testing.assert_array_equal(exit_enabled(np.array([0.3, 1.0, 1.01])), [True, True, False])


def test_the_simulator_checks_plans_against_the_profile():
    from edgeml_ros.policy.scenarios import resolve_scenario

    world = World.load("edgeml_ros/profiles/fashion_mnist_b_vgg.json")
    sim = world.simulation(resolve_scenario("markov-100000", duration_s=5.0))
    with pytest.raises(ValueError, match="exit_thresholds: needs 4 values"):
        sim.run(ExecutionPlan(2, (0.5, 0.5, 0.0)), 5)
    with pytest.raises(ValueError, match=r"cut_point: 6 outside 0\.\.5"):
        sim.preview(ExecutionPlan(6, (0.5, 0.5, 0.5, 0.0)), 5)


def test_an_image_encoding_ships_the_frame_at_cut_0_uncompressed(bundle):
    blocks, exits = bundle.model.num_blocks, bundle.model.num_exits
    never = (NO_EARLY_EXIT,) * exits
    check_plan(ExecutionPlan(0, never, encoding="jpeg75"), blocks, exits)
    with pytest.raises(ValueError, match="encoding: png ships the camera frame, so cut_point must "
                       "be 0, not 2"):  # fmt: skip
        check_plan(ExecutionPlan(2, never, encoding="png"), blocks, exits)
    with pytest.raises(ValueError, match="compression: uint8 frames travel as they are, so it "
                       "must be none, not zstd"):  # fmt: skip
        check_plan(ExecutionPlan(0, never, encoding="uint8", compression="zstd"), blocks, exits)
    with pytest.raises(ValueError, match="encoding: 'jpeg95' unknown; known: fp32, fp16, int8, "
                       "uint8, png, jpeg90, jpeg75, jpeg50"):  # fmt: skip
        check_plan(ExecutionPlan(0, never, encoding="jpeg95"), blocks, exits)


def test_a_tensor_transport_leaves_a_plan_that_ships_the_frame_alone():
    tensors = ExecutionPlan(2, (0.5, 0.5, 0.0))
    assert with_tensor_transport(tensors, "int8", "zstd") == ExecutionPlan(
        2, (0.5, 0.5, 0.0), encoding="int8", compression="zstd"
    )
    frame = ExecutionPlan(0, (NO_EARLY_EXIT,) * 2 + (0.0,), encoding="png")
    assert with_tensor_transport(frame, "int8", "zstd") is frame
