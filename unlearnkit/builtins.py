"""The core's own datasets and models, registered through the same hooks as any plugin."""

from __future__ import annotations

from unlearnkit import models
from unlearnkit.core.hookspecs import Register, hookimpl
from unlearnkit.data import datasets as data
from unlearnkit.data import files as filedata


@hookimpl
def unlearnkit_register_datasets(register: Register) -> None:
    register("mnist1d", data.mnist1d, data.Mnist1dConfig)
    register("cifar10", data.cifar10, data.ImageConfig)
    register("cifar100", data.cifar100, data.ImageConfig)
    register("svhn", data.svhn, data.ImageConfig)
    register("tiny-imagenet", data.tiny_imagenet, data.TinyImageNetConfig)
    register("synthetic", data.synthetic, data.SyntheticConfig)
    register("npz", filedata.npz, filedata.NpzConfig)
    register("folder", filedata.folder, filedata.FolderConfig)


@hookimpl
def unlearnkit_register_models(register: Register) -> None:
    register("mlp", models.mlp, models.MlpConfig)
    register("cnn1d", models.cnn1d, models.Cnn1dConfig)
    register("cnn2d", models.cnn2d, models.Cnn2dConfig)
    register("resnet18", models.resnet18, models.ResNetConfig)
    register("vit-tiny", models.vit_tiny, models.VitConfig)
    register("torchvision", models.torchvision_model, models.TorchvisionConfig)
