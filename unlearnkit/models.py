"""Built-in models: `mlp`, `cnn1d`, `cnn2d`, `resnet18` (CIFAR stem), `vit-tiny`, and every torchvision
classification architecture as `torchvision:NAME`.

Each factory is `factory(config, input_shape, num_classes) -> nn.Module`; the last layer is
a `nn.Linear` head, whose input is the penultimate feature (see `penultimate_features`).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import nn

from unlearnkit.core.config import config_class
from unlearnkit.core.errors import UsageError, import_torchvision
from unlearnkit.core.registry import FROM_NAME
from unlearnkit.core.validators import positive


@config_class
class MlpConfig:
    """Two hidden ReLU layers of `hidden` units."""

    hidden: int = attrs.field(default=256, validator=positive)


def mlp(config: MlpConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    features = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, num_classes),
    )


@config_class
class Cnn1dConfig:
    """Three 1-D convolutions (`channels` wide) and a two-layer head, for MNIST-1D."""

    channels: int = attrs.field(default=32, validator=positive)
    hidden: int = attrs.field(default=128, validator=positive)


def cnn1d(config: Cnn1dConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 2:
        raise UsageError(f"cnn1d expects inputs of shape (channels, length), got {input_shape}")
    c, length = input_shape
    w = config.channels
    body = nn.Sequential(
        nn.Conv1d(c, w, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(w, 2 * w, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(2 * w, 2 * w, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = body(torch.zeros(1, c, length)).shape[1]
    return nn.Sequential(*body, nn.Linear(flat, config.hidden), nn.ReLU(), nn.Linear(config.hidden, num_classes))


@config_class
class Cnn2dConfig:
    """Two 5x5 convolutions (`channels`, then twice as many), each max-pooled by 2, and a
    two-layer head: the small CNN of MNIST-style experiments, for images of any size."""

    channels: int = attrs.field(default=32, validator=positive)
    hidden: int = attrs.field(default=128, validator=positive)


def cnn2d(config: Cnn2dConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise UsageError(f"cnn2d expects image inputs (channels, height, width), got {input_shape}")
    c, height, width = input_shape
    if min(height, width) < 4:
        raise UsageError(f"cnn2d pools twice by 2 and needs images of at least 4x4 pixels, got {height}x{width}")
    w = config.channels
    body = nn.Sequential(
        nn.Conv2d(c, w, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = 2 * w * (height // 4) * (width // 4)
    return nn.Sequential(*body, nn.Linear(flat, config.hidden), nn.ReLU(), nn.Linear(config.hidden, num_classes))


@config_class
class ResNetConfig:
    """torchvision's ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv, no max-pool."""


def resnet18(config: ResNetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import_torchvision()
    from torchvision.models import resnet18 as tv_resnet18

    if len(input_shape) != 3:
        raise UsageError(f"resnet18 expects image inputs (channels, height, width), got {input_shape}")
    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@config_class
class VitConfig:
    """ViT-Tiny (12 layers, 3 heads, width 192) from torchvision, patches of `patch_size` pixels."""

    patch_size: int = attrs.field(default=4, validator=positive)


def vit_tiny(config: VitConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import_torchvision()
    from torchvision.models import VisionTransformer

    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[0] != 3:
        raise UsageError(f"vit-tiny expects square RGB images (3, H, H), got {input_shape}")
    if input_shape[1] % config.patch_size:
        raise UsageError(f"vit-tiny: image size {input_shape[1]} is not a multiple of patch_size {config.patch_size}")
    return VisionTransformer(
        image_size=input_shape[1], patch_size=config.patch_size, num_layers=12, num_heads=3,
        hidden_dim=192, mlp_dim=768, num_classes=num_classes,
    )


@config_class
class TorchvisionConfig:
    """A torchvision classification architecture (`torchvision:NAME`, e.g. `torchvision:resnet50`),
    untrained, its head sized to the dataset's classes: `torchvision.models.get_model(NAME,
    weights=None, num_classes=C)`; ViTs also take `image_size` from the data."""

    arch: str = attrs.field(default="", metadata={FROM_NAME: True})


#: Builder arguments some architectures need to train as plain classifiers (one output, no aux heads).
_TORCHVISION_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True}, "inception_v3": {"aux_logits": False, "init_weights": True}}


def torchvision_model(config: TorchvisionConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import difflib

    import_torchvision()
    import torchvision.models as tvm

    name = config.arch
    if not name:
        raise UsageError("model torchvision needs an architecture: torchvision:NAME, e.g. torchvision:resnet50")
    classifiers = tvm.list_models(module=tvm)
    examples = "resnet18, resnet50, vit_b_16, convnext_tiny, efficientnet_b0, mobilenet_v3_small"
    if name not in classifiers:
        if name in tvm.list_models():
            raise UsageError(f"torchvision model {name!r} is not an image classifier; use a classification architecture such as {examples}")
        close = difflib.get_close_matches(name, classifiers, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise UsageError(f"unknown torchvision classification model {name!r}; {hint}(e.g. {examples}: torchvision.models.list_models(module=torchvision.models))")
    if len(input_shape) != 3:
        raise UsageError(f"torchvision:{name} takes images (channels, height, width), but the data has inputs of shape "
                         f"{tuple(input_shape)}; 1-D data such as mnist1d needs a 1-D model (cnn1d, mlp)")
    if input_shape[0] != 3:
        raise UsageError(f"torchvision:{name} takes RGB images (3 channels), but the data has {input_shape[0]}; "
                         "a folder dataset reads RGB with mode = 'rgb'")
    kwargs: dict = {"weights": None, "num_classes": num_classes, **_TORCHVISION_ARGS.get(name, {})}
    if name.startswith("vit_"):
        kwargs["image_size"] = input_shape[1]
    model = tvm.get_model(name, **kwargs)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features != num_classes:
        raise UsageError(f"torchvision:{name} does not end in an nn.Linear head, which unlearning methods need (features, "
                         f"head resets); choose another architecture, e.g. {examples}")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError, AssertionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"torchvision:{name} cannot take images of shape {tuple(input_shape)}: {reason}; resize them "
                         "(folder datasets: size = N)") from None
    return model.train()


def head(model: nn.Module) -> nn.Linear:
    """The model's last `nn.Linear` layer (its classifier head)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UsageError(f"{type(model).__name__} has no nn.Linear head")
    return linears[-1]


@torch.no_grad()
def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of the model's head for `x`, flattened per sample, and the logits, from one
    forward pass (eval mode, no gradient)."""
    captured: list[torch.Tensor] = []
    handle = head(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    was_training = model.training
    try:
        model.eval()
        logits = model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[-1].reshape(len(x), -1), logits


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's head for `x` (eval mode, no gradient), flattened per sample."""
    return features_and_logits(model, x)[0]
