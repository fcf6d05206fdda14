"""`example-head-reset`: re-initialise the classifier head and retrain it on D̂_r."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.core.validators import positive


@uk.config_class
class HeadResetConfig:
    epochs: int = attrs.field(default=5, validator=positive)
    lr: float = attrs.field(default=0.05, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)


class HeadReset(uk.Unlearner):
    """Forget by discarding the head (which holds the most sample-specific weights) and
    refitting it, body frozen, on the accessible retain subset."""

    reads = frozenset({"retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        head = uk.models.head(model)
        head.reset_parameters()
        for p in model.parameters():
            p.requires_grad_(False)
        head.requires_grad_(True)
        optimizer = torch.optim.SGD(head.parameters(), lr=self.config.lr, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        model.eval()  # the frozen body keeps its statistics
        step = 0
        for _ in range(self.config.epochs):
            for x, y in uk.batches(task.retain, self.config.batch_size, generator=g, device=device):
                loss = F.cross_entropy(model(x), y)
                uk.check_finite_loss(loss, "example-head-reset", step)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
        for p in model.parameters():
            p.requires_grad_(True)
        return model.eval()


@uk.hookimpl
def unlearnkit_register_unlearners(register) -> None:
    register("example-head-reset", HeadReset, HeadResetConfig)
