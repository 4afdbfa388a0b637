"""Multi-exit networks that can be cut after any block.

A `MultiExitNet` is a sequence of blocks with classifier heads ("exits") after some of them;
the last exit sits after the last block. `forward` returns the logits of every exit, which is
what joint multi-exit training needs; the split runtime (runtime.py) runs blocks one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


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


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> MultiExitNet:
    """A four-block CNN for 28x28 inputs with exits after blocks 0 and 1 and a final exit."""
    w = width
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


ARCHITECTURES: dict[str, Callable[..., MultiExitNet]] = {"small_cnn": small_cnn}


def build_model(arch: str, **kwargs) -> MultiExitNet:
    """Build a registered architecture by name."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
