import pytest
import torch

from edgeml_ros.core.images import to_model_input
from edgeml_ros.core.runtime import SplitRunner, check_device, exit_score


@pytest.fixture(scope="module")
def inputs(fmnist_test, bundle):
    meta = bundle.meta
    images = fmnist_test.images[:64, :, :, None].astype("float32") / 255.0
    return [
        to_model_input(im, tuple(meta.input_size), meta.norm_mean, meta.norm_std) for im in images
    ]


def test_head_then_tail_equals_unsplit_model_at_every_cut(bundle, inputs):
    model, runner = bundle.model, SplitRunner(bundle.model)
    never = [2.0] * model.num_exits  # no early exit fires
    for cut in range(model.num_blocks):
        for x in inputs:
            with torch.inference_mode():
                full = model(x)[-1]
            outcome = runner.run_head(x, cut, never)
            assert outcome.fired is None
            tail = runner.run_tail(outcome.features, cut)
            assert tail.class_id == int(full.argmax())
            assert tail.confidence == pytest.approx(float(torch.softmax(full, 1).max()), abs=1e-5)


def test_full_local_run_answers_with_final_exit(bundle, inputs):
    runner = SplitRunner(bundle.model)
    outcome = runner.run_head(inputs[0], bundle.model.num_blocks, [2.0] * bundle.model.num_exits)
    assert outcome.fired is not None and outcome.fired.exit_index == bundle.model.num_exits - 1


def test_zero_threshold_fires_first_exit_and_deepest_is_tracked(bundle, inputs):
    runner = SplitRunner(bundle.model)
    outcome = runner.run_head(inputs[0], 2, [0.0] * bundle.model.num_exits)
    assert outcome.fired.exit_index == 0
    # a threshold above 1 can never fire: those heads are skipped
    outcome = runner.run_head(inputs[0], 2, [2.0] * bundle.model.num_exits)
    assert outcome.fired is None and outcome.deepest_local is None
    unsure = [runner.run_head(x, 2, [1.0] * bundle.model.num_exits) for x in inputs]
    unsure = [o for o in unsure if o.fired is None]
    assert unsure and all(o.deepest_local.exit_index == 1 for o in unsure)


def test_exit_matches_model_exit_outputs(bundle, inputs):
    runner = SplitRunner(bundle.model)
    for x in inputs[:8]:
        with torch.inference_mode():
            first = bundle.model(x)[0]
        outcome = runner.run_head(x, 1, [0.0] * bundle.model.num_exits)
        assert outcome.fired.class_id == int(first.argmax())


def test_exit_scores():
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    uniform = torch.zeros(1, 3)
    assert exit_score(confident, "max_prob")[1] > 0.99
    assert exit_score(uniform, "entropy")[1] == pytest.approx(0.0, abs=1e-6)
    assert exit_score(confident, "entropy")[1] > 0.99
    with pytest.raises(ValueError, match="unknown exit rule"):
        exit_score(uniform, "margin")


def test_tail_can_use_the_remaining_exits(bundle, inputs):
    runner = SplitRunner(bundle.model)
    assert runner.run_tail(runner.run_head(inputs[0], 1, [2.0] * 3).features, 1).exit_index == 2
    features = runner.run_head(inputs[0], 1, [2.0] * 3).features
    assert runner.run_tail(features, 1, thresholds=[0.0, 0.0, 0.0]).exit_index == 1


def test_devices_are_checked():
    assert check_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not a torch device name"):
        check_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no such CUDA device"):
            check_device("cuda:0")
