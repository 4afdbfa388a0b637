import pytest
import torch

from edgeml_ros.core.models import ARCHITECTURES, build_model
from edgeml_ros.core.runtime import SplitRunner

BACKBONES = ["b_vgg", "resnet", "mobilenet_v2"]


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_shape_and_exits(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=1, width=0.25).eval()
    x = torch.randn(2, *model.input_shape)
    outs = model(x)
    assert len(outs) == model.num_exits >= 3
    assert all(tuple(o.shape) == (2, 10) for o in outs)


@pytest.mark.parametrize("arch", BACKBONES)
def test_split_anywhere_equals_unsplit(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=1, width=0.25).eval()
    runner = SplitRunner(model)
    never = [2.0] * model.num_exits
    x = torch.randn(1, *model.input_shape)
    with torch.inference_mode():
        full = torch.softmax(model(x)[-1], 1)
    for cut in range(model.num_blocks + 1):
        outcome = runner.run_head(x, cut, never)
        if cut == model.num_blocks:
            decision = outcome.fired
        else:
            decision = runner.run_tail(outcome.features, cut)
        assert decision.class_id == int(full.argmax())
        assert decision.confidence == pytest.approx(float(full.max()), abs=1e-5)


@pytest.mark.parametrize("arch, size", [("small_cnn", 28), *((b, 32) for b in BACKBONES)])
def test_built_ins_are_registered_with_their_input_shape(arch, size):
    assert arch in ARCHITECTURES
    assert build_model(arch, in_channels=3, width=0.25).input_shape == (3, size, size)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'alexnet'"):
        build_model("alexnet")
