"""UA, RA, TA and MIA-efficacy of a model on its task, and gaps to the Retrain model."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from unlearnkit.core.errors import DivergenceError
from unlearnkit.core.interfaces import MembershipAttack, resolve_device
from unlearnkit.data.datasets import ArrayDataset
from unlearnkit.engine.training import batches

METRICS = ("UA", "RA", "TA", "MIA")


@torch.no_grad()
def predict_logits(model: nn.Module, data: ArrayDataset, *, batch_size: int = 1024, device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of `model` (in eval mode) for every sample of `data`, on the CPU."""
    device = resolve_device(device, model)
    was_training = model.training
    model.eval()
    try:
        out = [model(x).float().cpu() for x, _ in batches(data, batch_size, device=device)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of correct arg-max predictions."""
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def mia_efficacy(
    model: nn.Module,
    task: Any,
    attack: MembershipAttack,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    logits: Optional[dict[str, torch.Tensor]] = None,
) -> float:
    """% of D_f the attack calls non-member, trained on D_r members against test non-members.

    Members are a seeded random sample of D_r as large as the test set (SalUn's protocol).
    """
    g = torch.Generator().manual_seed(seed)
    retain = task.retain_full
    members = retain.subset(torch.randperm(len(retain), generator=g)[: len(task.test)].sort().values)
    logits = logits or {}
    member_logits = predict_logits(model, members, device=device)
    test_logits = logits.get("test", None)
    if test_logits is None:
        test_logits = predict_logits(model, task.test, device=device)
    forget_logits = logits.get("forget", None)
    if forget_logits is None:
        forget_logits = predict_logits(model, task.forget, device=device)
    attack.fit((member_logits, members.y), (test_logits, task.test.y))
    p_member = attack.predict_proba(forget_logits, task.forget.y)
    return 100.0 * (p_member < 0.5).float().mean().item()


def attack_report(
    model: nn.Module, task: Any, attack: MembershipAttack, *, seed: int = 0, device: str | torch.device | None = None
) -> dict[str, float]:
    """How well a fitted `attack` tells D_f from unseen data, on a balanced set.

    Positives are D_f, negatives the held-out val split (never trained on), subsampled to equal
    size with `seed`. Reports accuracy at the 0.5 threshold, ROC AUC, and TPR at 1% and 0.1% FPR
    (all in %): low-FPR TPR exposes what population accuracy hides. After ideal unlearning the
    attack sees D_f like unseen data: AUC 50.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    g = torch.Generator().manual_seed(seed)
    n = min(len(task.forget), len(task.val))
    forget = task.forget.subset(torch.randperm(len(task.forget), generator=g)[:n])
    val = task.val.subset(torch.randperm(len(task.val), generator=g)[:n])
    scores = torch.cat([
        attack.predict_proba(predict_logits(model, forget, device=device), forget.y),
        attack.predict_proba(predict_logits(model, val, device=device), val.y),
    ]).detach().double().cpu().numpy()
    truth = torch.cat([torch.ones(n), torch.zeros(n)]).numpy()
    fpr, tpr, _ = roc_curve(truth, scores)

    def tpr_at(max_fpr: float) -> float:
        return 100.0 * float(tpr[fpr <= max_fpr].max(initial=0.0))

    return {
        "accuracy": 100.0 * float(((scores >= 0.5) == truth).mean()),
        "AUC": 100.0 * float(roc_auc_score(truth, scores)),
        "TPR@1%FPR": tpr_at(0.01),
        "TPR@0.1%FPR": tpr_at(0.001),
    }


def evaluate(
    model: nn.Module,
    task: Any,
    attack: "str | MembershipAttack | None" = "svc-confidence",
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    report: bool = False,
) -> dict[str, Any]:
    """UA = 100 − acc(D_f), RA = acc(D_r), TA = acc(test), MIA = MIA-efficacy (all in %).

    `attack` is a registered attack name, an attack instance, or None to skip MIA. With
    `report`, adds `attack_report`'s figures for the same fitted attack under "MIA_report".
    """
    forget = predict_logits(model, task.forget, device=device)
    test = predict_logits(model, task.test, device=device)
    retain = predict_logits(model, task.retain_full, device=device)
    for part, logits in (("forget set", forget), ("test set", test), ("retain set", retain)):
        if not torch.isfinite(logits).all():
            raise DivergenceError(f"the model's outputs on the {part} are not finite (NaN or inf): its weights diverged")
    result = {
        "UA": 100.0 - accuracy(forget, task.forget.y),
        "RA": accuracy(retain, task.retain_full.y),
        "TA": accuracy(test, task.test.y),
    }
    if attack is not None:
        if isinstance(attack, str):
            from unlearnkit.core.registry import get_attack

            attack = get_attack(attack)
        result["MIA"] = mia_efficacy(model, task, attack, seed=seed, device=device, logits={"forget": forget, "test": test})
        if report:
            result["MIA_report"] = attack_report(model, task, attack, seed=seed, device=device)
    return result


def gap(metrics: dict[str, float], gold: dict[str, float]) -> dict[str, float]:
    """|method − Retrain| per metric both have, and their average as `avg`."""
    out = {k: abs(metrics[k] - gold[k]) for k in METRICS if k in metrics and k in gold}
    out["avg"] = sum(out.values()) / len(out) if out else 0.0
    return out
