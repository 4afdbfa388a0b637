"""Multi-exit networks that can be cut after any block.

A `MultiExitNet` is a sequence of blocks with classifier heads ("exits") after some of them;
the last exit sits after the last block. `forward` returns the logits of every exit, which is
what joint multi-exit training needs; the split runtime (runtime.py) runs blocks one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.models._utils import _make_divisible
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock


class MultiExitNet(nn.Module):
    """Blocks with exits after the blocks listed in `exit_after` (the last one is final)."""

    def __init__(
        self, blocks: Sequence[nn.Module], exits: Sequence[nn.Module], exit_after: Sequence[int]
    ) -> None:
        super().__init__()
        if len(exits) != len(exit_after):
            raise ValueError("one exit_after index per exit is needed")
        if list(exit_after) != sorted(set(exit_after)) or exit_after[-1] != len(blocks) - 1:
            raise ValueError("exit_after must increase strictly and end at the last block")
        self.blocks = nn.ModuleList(blocks)
        self.exits = nn.ModuleList(exits)
        self.exit_after = tuple(int(i) for i in exit_after)
        self._exit_of_block = {block: e for e, block in enumerate(self.exit_after)}

    @property
    def num_blocks(self) -> int:
        """Number of blocks; valid cut points are 0..num_blocks."""
        return len(self.blocks)

    @property
    def num_exits(self) -> int:
        """Number of exits, final exit included."""
        return len(self.exits)

    def exit_at_block(self, block: int) -> int | None:
        """Index of the exit after `block`, or None."""
        return self._exit_of_block.get(block)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, earliest first."""
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            exit_index = self._exit_of_block.get(i)
            if exit_index is not None:
                outputs.append(self.exits[exit_index](x))
        return outputs


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _pooled_linear_exit(channels: int, pool: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(channels * pool * pool, num_classes)
    )


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """A four-block CNN for 28x28 inputs with exits after blocks 0 and 1 and a final exit."""
    w = _channels(16, width)
    blocks = [
        nn.Sequential(*_conv_bn_relu(in_channels, w), nn.MaxPool2d(2)),  # 14x14
        nn.Sequential(*_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2)),  # 7x7
        nn.Sequential(*_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2)),  # 3x3
        nn.Sequential(*_conv_bn_relu(4 * w, 4 * w)),  # 3x3
    ]
    exits = [
        _pooled_linear_exit(w, 4, num_classes),
        _pooled_linear_exit(2 * w, 4, num_classes),
        _pooled_linear_exit(4 * w, 1, num_classes),
    ]
    return MultiExitNet(blocks, exits, exit_after=(0, 1, 3))


def _channels(c: int, width: float) -> int:
    """Channels scaled by a width multiplier, kept divisible by 8 (as in MobileNet)."""
    return _make_divisible(c * width, 8)


def b_vgg(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """B-VGG, the EdgeML authors' network: VGG16-BN for 32x32 input with early exits.

    One block per pooling stage; exits after pool2, pool3 and pool4, the final exit after pool5.
    """
    stages = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    blocks, c_in = [], in_channels
    for c, convs in stages:
        c = _channels(c, width)
        layers = []
        for _ in range(convs):
            layers += _conv_bn_relu(c_in, c)
            c_in = c
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    widths = [_channels(c, width) for c, _ in stages]
    exits = [_pooled_linear_exit(widths[i], 2, num_classes) for i in (1, 2, 3)]
    exits.append(_pooled_linear_exit(widths[4], 1, num_classes))
    return MultiExitNet(blocks, exits, exit_after=(1, 2, 3, 4))


def resnet(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """ResNet-20 (CIFAR style) with early exits, cut after any basic block.

    Three stages of three basic blocks; exits after the first and second stages, the final exit
    after the third.
    """
    c = [_channels(16, width), _channels(32, width), _channels(64, width)]
    blocks: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, c[0]))]
    c_in = c[0]
    for stage, planes in enumerate(c):
        for i in range(3):
            stride = 2 if stage > 0 and i == 0 else 1
            downsample = None
            if stride != 1 or c_in != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(c_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )
            blocks.append(BasicBlock(c_in, planes, stride, downsample))
            c_in = planes
    exits = [
        _pooled_linear_exit(c[0], 4, num_classes),
        _pooled_linear_exit(c[1], 2, num_classes),
        _pooled_linear_exit(c[2], 1, num_classes),
    ]
    return MultiExitNet(blocks, exits, exit_after=(3, 6, 9))


def mobilenet_v2(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """MobileNetV2 for 32x32 input (stride-1 stem, as for CIFAR) with early exits.

    One block per inverted-residual stage; exits after the 24-, 32- and 96-channel stages.
    """
    settings = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
    c_in = _channels(32, width)
    blocks: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, c_in))]
    stage_out = []
    for t, c, n, stride in settings:
        c = _channels(c, width)
        layers = []
        for i in range(n):
            layers.append(InvertedResidual(c_in, c, stride if i == 0 else 1, t))
            c_in = c
        blocks.append(nn.Sequential(*layers))
        stage_out.append(c)
    last = _channels(1280, max(width, 1.0))
    blocks.append(
        nn.Sequential(nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6())
    )
    exits = [
        _pooled_linear_exit(stage_out[1], 4, num_classes),
        _pooled_linear_exit(stage_out[2], 2, num_classes),
        _pooled_linear_exit(stage_out[4], 2, num_classes),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                      nn.Linear(last, num_classes)),
    ]  # fmt: skip
    return MultiExitNet(blocks, exits, exit_after=(2, 3, 5, len(blocks) - 1))


ARCHITECTURES: dict[str, Callable[..., MultiExitNet]] = {
    "small_cnn": small_cnn,
    "b_vgg": b_vgg,
    "resnet": resnet,
    "mobilenet_v2": mobilenet_v2,
}
# Input size each architecture is built for (images are resized to it).
INPUT_SIZES: dict[str, tuple[int, int]] = {
    "small_cnn": (28, 28),
    "b_vgg": (32, 32),
    "resnet": (32, 32),
    "mobilenet_v2": (32, 32),
}


def build_model(arch: str, **kwargs) -> MultiExitNet:
    """Build a registered architecture by name."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
