"""Run under torchrun by test_ltu_distributed.py: LTU on the tiny task; rank 0 saves the result."""

import sys

import torch

import unlearnkit as uk
from unlearnkit.engine import distributed
from unlearnkit.testing import trained_tiny_model

SETTINGS = {
    "full": {},
    "first-order": {"first_order": True},
    "wo-metaopt": {"meta_opt": False},
}
CONFIG = {"iterations": 4, "bank_configs": {n: {"steps": 30} for n in ("mi-logreg", "mi-mlp-sorted", "mi-mlp-label")}}


def unlearn(setting: str) -> tuple[torch.nn.Module, int]:
    """The unlearned model and how many query samples this process's meta-test losses read."""
    from unlearnkit_ltu import meta

    seen = []
    real = meta.query_loss
    meta.query_loss = lambda logits, labels, weights: seen.append(len(labels)) or real(logits, labels, weights)
    try:
        model, task = trained_tiny_model()
        return uk.get_unlearner("ltu", {**CONFIG, **SETTINGS[setting]}).unlearn(model, task, seed=0), sum(seen)
    finally:
        meta.query_loss = real


if __name__ == "__main__":
    distributed.init_from_env("cpu")
    setting, out = sys.argv[1], sys.argv[2]
    new, seen = unlearn(setting)
    if distributed.is_main():
        torch.save({"state": new.state_dict(), "query_samples": torch.tensor(seen)}, out)
    distributed.shutdown()
