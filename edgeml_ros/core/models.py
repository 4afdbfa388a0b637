"""Multi-exit networks that can be cut after any block, made from any PyTorch classifier.

A `MultiExitNet` is a sequence of blocks with classifier heads ("exits") after some of them;
the last exit sits after the last block. `forward` returns the logits of every exit, which is
what joint multi-exit training needs; the split runtime (runtime.py) runs blocks one by one.

`wrap_model` turns a classifier (any `torch.nn.Module`) into one: blocks are lists of the
model's modules by path, the model's own classifier is the final exit, and early exits are
added after named blocks, sized by a dry run. Factories returning a MultiExitNet are built by
name (`register_architecture`) or by a `package.module:function` reference (`build_model`);
the built-in architectures below are wrapped and registered the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn


class MultiExitNet(nn.Module):
    """Blocks with exits after the blocks listed in `exit_after` (the last one is final).

    `input_shape` is the (channels, height, width) of one input and `num_classes` the number of
    logits of every exit.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        exits: Sequence[nn.Module],
        exit_after: Sequence[int],
        *,
        input_shape: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(exits) != len(exit_after):
            raise ValueError("one exit_after index per exit is needed")
        if list(exit_after) != sorted(set(exit_after)) or exit_after[-1] != len(blocks) - 1:
            raise ValueError("exit_after must increase strictly and end at the last block")
        self.blocks = nn.ModuleList(blocks)
        self.exits = nn.ModuleList(exits)
        self.exit_after = tuple(int(i) for i in exit_after)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
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


class WrapError(ValueError):
    """A model that cannot be wrapped, or cut where asked; the message names the module."""


class ArchitectureError(ValueError):
    """An architecture name or factory reference that does not give a MultiExitNet."""


# A block or the head: module paths in the model ("layer1", "features.3"), and modules that
# stand for functional steps of the model's forward (nn.Flatten(1) for torch.flatten).
Parts = str | nn.Module | Sequence[str | nn.Module]
# Builds an exit head from the shape of a block's output (batch left out) and the class count.
ExitHead = Callable[[tuple[int, ...], int], nn.Module]


def _pooled_linear(channels: int, pool: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(channels * pool * pool, num_classes)
    )


def pooled_exit(pool: int = 2) -> ExitHead:
    """Exit heads that average-pool a (C, H, W) output to at most pool x pool, then classify.

    A flat (F,) output gets a linear layer.
    """

    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(shape) == 3:
            return _pooled_linear(shape[0], min(pool, shape[1], shape[2]), num_classes)
        if len(shape) == 1:
            return nn.Linear(shape[0], num_classes)
        raise WrapError(
            f"no default exit head for outputs of shape {shape}: pass exits={{block: factory}}"
        )

    return build


def conv_exit(channels: int = 128) -> ExitHead:
    """Exit heads with one strided 3x3 convolution before pooling and classifying.

    For early exits on features a linear probe cannot separate (as in BranchyNet's branches).
    """

    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(shape) != 3:
            raise WrapError(f"a convolutional exit head needs (C, H, W) outputs, not {shape}")
        return nn.Sequential(
            nn.Conv2d(shape[0], channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            _pooled_linear(channels, 1, num_classes),
        )

    return build


def wrap_model(
    model: nn.Module,
    *,
    blocks: Mapping[str, Parts] | Sequence[str],
    head: Parts,
    input_shape: Sequence[int],
    exits: Mapping[str, ExitHead] | Sequence[str] = (),
) -> MultiExitNet:
    """The MultiExitNet that runs `model` block by block, with early exits.

    `blocks` maps block names to their parts (a list of paths gives one block per path, named
    by it); `head`, the model's own classifier, is the final exit. `exits` names the blocks
    that get an early exit: a list uses `pooled_exit()`, a mapping gives each its factory.
    The model's modules are shared, not copied.

    A dry run on a random `input_shape` (channels, height, width) input checks the cuts: the
    model runs whole, recording what each listed module receives, then part after part; every
    listed module must run exactly once, in the listed order, and get exactly what the previous
    part gave. Anything else (a skip connection across a cut, a functional step between parts,
    a module of the model left out) raises WrapError naming the module.
    """
    name = type(model).__name__
    named = blocks.items() if isinstance(blocks, Mapping) else [(path, path) for path in blocks]
    stages = [(f"block {b!r}", b, _resolve(model, f"block {b!r}", parts)) for b, parts in named]
    if not stages:
        raise WrapError(f"{name}: at least one block is needed")
    stages.append(("the head", None, _resolve(model, "the head", head)))
    paths = [path for _, _, parts in stages for path, _ in parts if path is not None]
    _check_disjoint(paths)
    device = next(model.parameters(), torch.zeros(())).device
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, *input_shape), generator=generator).to(device)
    with torch.no_grad(), _eval_mode(model):
        received, logits = _run_whole(model, paths, x)
        outputs = _run_parts(name, stages, received, x, logits)
    num_classes = logits.shape[1]
    block_names = [b for _, b, _ in stages[:-1]]
    factories = dict(exits) if isinstance(exits, Mapping) else dict.fromkeys(exits, pooled_exit())
    if not isinstance(exits, Mapping) and len(factories) != len(exits):
        raise WrapError(f"{name}: an exit is named twice in {list(exits)}")
    for block in factories:
        if block not in block_names:
            raise WrapError(f"exit after {block!r}: no such block (blocks: {block_names})")
        if block == block_names[-1]:
            raise WrapError(f"exit after {block!r}: the exit after the last block is the head")
    exit_after = sorted(block_names.index(b) for b in factories)
    heads = [
        _exit_head(block_names[i], factories[block_names[i]], outputs[i], num_classes)
        for i in exit_after
    ]
    return MultiExitNet(
        [_as_module(parts) for _, _, parts in stages[:-1]],
        [*(h.to(device) for h in heads), _as_module(stages[-1][2])],
        [*exit_after, len(block_names) - 1],
        input_shape=input_shape,
        num_classes=num_classes,
    )


def _resolve(model: nn.Module, label: str, parts: Parts) -> list[tuple[str | None, nn.Module]]:
    """(path, module) of each part; glue modules have no path."""
    items = [parts] if isinstance(parts, (str, nn.Module)) else list(parts)
    resolved: list[tuple[str | None, nn.Module]] = []
    for item in items:
        if isinstance(item, nn.Module):
            resolved.append((None, item))
        elif isinstance(item, str) and item:
            resolved.append((item, _submodule(model, item)))
        else:
            raise WrapError(f"{label}: {item!r} is neither a module path nor a module")
    if all(path is None for path, _ in resolved):
        raise WrapError(f"{label} names no module of {type(model).__name__}")
    return resolved


def _submodule(model: nn.Module, path: str) -> nn.Module:
    module, parts = model, path.split(".")
    for i, part in enumerate(parts):
        children = dict(module.named_children())
        if part not in children:
            parent = ".".join(parts[:i]) or type(model).__name__
            raise WrapError(
                f"{type(model).__name__} has no module {path!r}: {parent} has "
                f"{', '.join(repr(c) for c in children) or 'no submodules'}"
            )
        module = children[part]
    return module


def _check_disjoint(paths: list[str]) -> None:
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise WrapError(f"module {twice!r} is listed twice")
    for outer in paths:
        for inner in paths:
            if inner.startswith(outer + "."):
                raise WrapError(f"module {inner!r} is inside {outer!r}, which is listed too")


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for a dry run; every submodule's own mode comes back afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _unlisted(model: nn.Module, paths: list[str]) -> list[str]:
    """The modules next to the listed ones that no block or head holds."""
    ancestors = {".".join(p.split(".")[:i]) for p in paths for i in range(p.count(".") + 1)}
    unlisted = []
    for parent in sorted(ancestors):
        for child, _ in model.get_submodule(parent).named_children():
            path = f"{parent}.{child}" if parent else child
            if path not in ancestors and path not in paths:
                unlisted.append(path)
    return unlisted


def _run_whole(
    model: nn.Module, paths: list[str], x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run `model` on x; what each listed module received, and the logits.

    Every listed module must run once, in the listed order, on one tensor; an unlisted module
    next to them must not run.
    """
    name = type(model).__name__
    calls: list[tuple[str, tuple, dict]] = []

    def recorder(path: str) -> Callable:
        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            # a copy: the module (ReLU(inplace=True)) or forward may change its input in place
            calls.append(
                (path, tuple(a.clone() if torch.is_tensor(a) else a for a in args), kwargs)
            )

        return record

    handles = [
        model.get_submodule(p).register_forward_pre_hook(recorder(p), with_kwargs=True)
        for p in paths + _unlisted(model, paths)
    ]
    try:
        logits = model(x)
    except Exception as exc:  # the user's forward: say which input it failed on
        raise WrapError(
            f"{name} does not run on a random input of shape {tuple(x.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    if not torch.is_tensor(logits) or logits.ndim != 2:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise WrapError(f"{name}.forward must return (batch, classes) logits, not {shape}")
    ran = [path for path, _, _ in calls]
    for path in ran:
        if path not in paths:
            raise WrapError(
                f"module {path!r} runs in {name}.forward but is in no block and not in the head"
            )
    for path in paths:
        if ran.count(path) != 1:
            parent = path.rpartition(".")[0]
            hint = f": cut around {parent!r} instead" if parent and ran.count(path) else ""
            raise WrapError(
                f"module {path!r} runs {ran.count(path)} times in {name}.forward, not once{hint}"
            )
    if ran != paths:
        i = next(i for i, (a, b) in enumerate(zip(ran, paths, strict=True)) if a != b)
        raise WrapError(
            f"{name}.forward runs {ran[i]!r} where the blocks list {paths[i]!r}: list the "
            "modules in the order forward runs them"
        )
    for path, args, kwargs in calls:
        if kwargs or len(args) != 1 or not torch.is_tensor(args[0]):
            raise WrapError(
                f"{name}.forward calls {path!r} with {len(args)} positional and {len(kwargs)} "
                "keyword arguments: a module on the cut path takes one tensor"
            )
    return {path: args[0] for path, args, _ in calls}, logits


def _same(a: Any, b: torch.Tensor) -> bool:
    return torch.is_tensor(a) and a.shape == b.shape and torch.allclose(a, b, 1e-4, 1e-5)


def _run_parts(
    name: str,
    stages: list[tuple[str, str | None, list[tuple[str | None, nn.Module]]]],
    received: dict[str, torch.Tensor],
    x: torch.Tensor,
    logits: torch.Tensor,
) -> list[torch.Tensor]:
    """The output of every block, run part after part from x.

    Each listed module must get what it got when the model ran whole.
    """
    outputs, previous = [], None
    for label, _, parts in stages:
        first = True
        for path, module in parts:
            if path is not None:
                if not _same(x, received[path]):
                    where = f"at the cut before {label}" if first and previous else f"in {label}"
                    source = f"the output of {previous!r}" if previous else "its input"
                    raise WrapError(
                        f"{name} cannot be split {where}: its forward does not pass {source} "
                        f"straight to {path!r} (a skip connection around them, or a functional "
                        "step such as torch.flatten between them); cut elsewhere, or list the "
                        "step as a module"
                    )
                previous, first = path, False
            x = module(x)
            if not torch.is_tensor(x):
                raise WrapError(f"{path or module!r} returns a {type(x).__name__}, not a tensor")
        outputs.append(x)
    if not _same(x, logits):
        raise WrapError(
            f"{name}.forward does not return the output of {previous!r}, the head's last module "
            "(a functional step or a skip connection after it?)"
        )
    return outputs


def _exit_head(
    block: str, factory: ExitHead, features: torch.Tensor, num_classes: int
) -> nn.Module:
    """The exit head after `block`, checked on the block's dry-run output."""
    try:
        head = factory(tuple(features.shape[1:]), num_classes)
    except WrapError as exc:
        raise WrapError(f"exit after {block!r}: {exc}") from None
    with torch.no_grad(), _eval_mode(head):
        logits = head.to(features.device)(features)
    if not torch.is_tensor(logits) or tuple(logits.shape) != (len(features), num_classes):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise WrapError(
            f"the exit head after {block!r} outputs {shape}, not (batch, {num_classes}) logits"
        )
    return head


def _as_module(parts: list[tuple[str | None, nn.Module]]) -> nn.Module:
    """One part as itself (its weights keep their names), several as a Sequential."""
    return parts[0][1] if len(parts) == 1 else nn.Sequential(*(m for _, m in parts))


# Architectures buildable by name: factories returning a MultiExitNet.
ARCHITECTURES: dict[str, Callable[..., MultiExitNet]] = {}
FactoryT = TypeVar("FactoryT", bound=Callable[..., MultiExitNet])


def register_architecture(name: str) -> Callable[[FactoryT], FactoryT]:
    """Decorator: make a factory returning a MultiExitNet buildable as `name`.

    Registering is for modules the caller imports; a checkpoint of a model outside the core
    names its factory as `package.module:function` instead, which `build_model` imports.
    """

    def register(factory: FactoryT) -> FactoryT:
        known = ARCHITECTURES.get(name)
        if known is not None and _qualified(known) != _qualified(factory):
            raise ValueError(f"architecture {name!r} is registered already ({_qualified(known)})")
        ARCHITECTURES[name] = factory
        return factory

    return register


def _qualified(factory: Callable) -> str:
    return f"{factory.__module__}:{factory.__qualname__}"


def resolve_architecture(arch: str) -> Callable[..., MultiExitNet]:
    """The factory of a registered name, or of a `package.module:function` reference.

    A reference imports its module: name only factories whose code you trust.
    """
    if ":" not in arch:
        if arch not in ARCHITECTURES:
            raise ArchitectureError(
                f"unknown architecture {arch!r}; known: "
                f"{', '.join(ARCHITECTURES)}, or package.module:function"
            )
        return ARCHITECTURES[arch]
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise ArchitectureError(f"model factory {arch!r} is not package.module:function")
    try:
        factory = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: whatever fails on import is the reason
        raise ArchitectureError(
            f"model factory {arch!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ArchitectureError(f"model factory {arch!r}: {module_name!r} has no {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ArchitectureError(
            f"model factory {arch!r}: {attr!r} is a {type(factory).__name__}, not callable"
        )
    return factory


def build_model(arch: str, **kwargs: Any) -> MultiExitNet:
    """Build a registered architecture, or call a `package.module:function` factory."""
    factory = resolve_architecture(arch)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise ArchitectureError(f"architecture {arch!r} does not take {kwargs}: {exc}") from None
    model = factory(**kwargs)
    if not isinstance(model, MultiExitNet):
        raise ArchitectureError(
            f"architecture {arch!r} returned a {type(model).__name__}, not a "
            "MultiExitNet (wrap the model with wrap_model)"
        )
    return model


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _channels(c: int, width: float) -> int:
    """Channels scaled by a width multiplier, kept divisible by 8 (as in MobileNet).

    torchvision's `_make_divisible` rule: rounded to the nearest multiple of 8, at least 8, and
    never more than 10 % below the scaled count. Written out so that the models without
    torchvision layers (B-VGG, the small CNN) load without importing torchvision, which costs
    a node about 1.5 s of CPU at start.
    """
    scaled = c * width
    divisible = max(8, int(scaled + 4) // 8 * 8)
    return divisible + 8 if divisible < 0.9 * scaled else divisible


@register_architecture("small_cnn")
def small_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """A four-block CNN for 28x28 inputs with exits after blocks 1 and 2 and a final exit."""
    w = _channels(16, width)
    net = nn.Sequential(
        OrderedDict(
            block1=nn.Sequential(*_conv_bn_relu(in_channels, w), nn.MaxPool2d(2)),  # 14x14
            block2=nn.Sequential(*_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2)),  # 7x7
            block3=nn.Sequential(*_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2)),  # 3x3
            block4=nn.Sequential(*_conv_bn_relu(4 * w, 4 * w)),  # 3x3
            classifier=_pooled_linear(4 * w, 1, num_classes),
        )
    )
    return wrap_model(
        net,
        blocks=["block1", "block2", "block3", "block4"],
        head="classifier",
        exits={"block1": pooled_exit(4), "block2": pooled_exit(4)},
        input_shape=(in_channels, 28, 28),
    )


@register_architecture("b_vgg")
def b_vgg(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """B-VGG, the EdgeML authors' network: VGG16-BN for 32x32 input with early exits.

    One block per pooling stage; exits after pool2, pool3 and pool4, the final exit after pool5.
    """
    stages = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    layers, c_in = OrderedDict(), in_channels
    for stage, (c, convs) in enumerate(stages, 1):
        c = _channels(c, width)
        convs_bn_relu = []
        for _ in range(convs):
            convs_bn_relu += _conv_bn_relu(c_in, c)
            c_in = c
        layers[f"pool{stage}"] = nn.Sequential(*convs_bn_relu, nn.MaxPool2d(2))
    layers["classifier"] = _pooled_linear(c_in, 1, num_classes)
    return wrap_model(
        nn.Sequential(layers),
        blocks=[f"pool{s}" for s in range(1, 6)],
        head="classifier",
        exits={f"pool{s}": pooled_exit(2) for s in (2, 3, 4)},
        input_shape=(in_channels, 32, 32),
    )


@register_architecture("resnet")
def resnet(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """ResNet-20 (CIFAR style) with early exits, cut after any basic block.

    Three stages of three basic blocks; exits after the first and second stages, the final exit
    after the third.
    """
    from torchvision.models.resnet import BasicBlock

    c = [_channels(16, width), _channels(32, width), _channels(64, width)]
    layers = OrderedDict(stem=nn.Sequential(*_conv_bn_relu(in_channels, c[0])))
    c_in = c[0]
    for stage, planes in enumerate(c, 1):
        basic_blocks = []
        for i in range(3):
            stride = 2 if stage > 1 and i == 0 else 1
            downsample = None
            if stride != 1 or c_in != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(c_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )
            basic_blocks.append(BasicBlock(c_in, planes, stride, downsample))
            c_in = planes
        layers[f"stage{stage}"] = nn.Sequential(*basic_blocks)
    layers["classifier"] = _pooled_linear(c[2], 1, num_classes)
    blocks = ["stem", *(f"stage{s}.{i}" for s in (1, 2, 3) for i in range(3))]
    return wrap_model(
        nn.Sequential(layers),
        blocks=blocks,
        head="classifier",
        exits={"stage1.2": pooled_exit(4), "stage2.2": pooled_exit(2)},
        input_shape=(in_channels, 32, 32),
    )


@register_architecture("mobilenet_v2")
def mobilenet_v2(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> MultiExitNet:
    """MobileNetV2 for 32x32 input (stride-1 stem, as for CIFAR) with early exits.

    One block per inverted-residual stage; exits after the 24-, 32- and 96-channel stages.
    """
    from torchvision.models.mobilenetv2 import InvertedResidual

    settings = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
    c_in = _channels(32, width)
    layers = OrderedDict(stem=nn.Sequential(*_conv_bn_relu(in_channels, c_in)))
    for stage, (t, c, n, stride) in enumerate(settings, 1):
        c = _channels(c, width)
        residuals = []
        for i in range(n):
            residuals.append(InvertedResidual(c_in, c, stride if i == 0 else 1, t))
            c_in = c
        layers[f"stage{stage}"] = nn.Sequential(*residuals)
    last = _channels(1280, max(width, 1.0))
    layers["conv_last"] = nn.Sequential(
        nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()
    )
    layers["classifier"] = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes)
    )
    blocks = ["stem", *(f"stage{s}" for s in range(1, len(settings) + 1)), "conv_last"]
    return wrap_model(
        nn.Sequential(layers),
        blocks=blocks,
        head="classifier",
        exits={"stage2": pooled_exit(4), "stage3": pooled_exit(2), "stage5": pooled_exit(2)},
        input_shape=(in_channels, 32, 32),
    )


@register_architecture("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: int = 96) -> MultiExitNet:
    """Torchvision's ResNet-18 (random initialisation) with early exits, for drone frames.

    Five blocks: the stem (conv1, bn1, relu, maxpool) and the four residual stages; exits
    after layer1, layer2 and layer3 (one convolution each, `conv_exit`), the model's own
    classifier after layer4. A grey input
    gets a one-channel first convolution.
    """
    from torchvision.models import resnet18 as torchvision_resnet18

    net = torchvision_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return wrap_model(
        net,
        blocks={"stem": ["conv1", "bn1", "relu", "maxpool"], "layer1": "layer1",
                "layer2": "layer2", "layer3": "layer3", "layer4": "layer4"},
        head=["avgpool", nn.Flatten(1), "fc"],
        exits=dict.fromkeys(("layer1", "layer2", "layer3"), conv_exit()),
        input_shape=(in_channels, input_size, input_size),
    )  # fmt: skip
