"""Oracle-free stopping for iterative unlearners: stop when the forget set looks unseen.

An iterative method's config inherits `StopSettings`; its loop calls a `StopMonitor`:

    monitor = StopMonitor(self, model, task, total_steps=T, seed=seed, device=device)
    for step in range(1, T + 1):
        ...one optimiser step...
        if monitor.check(model, step):
            break
    return monitor.finish(model)

`stop = "fixed"` is the method's paper: T steps, nothing evaluated. The other rules read only
what a user deleting data from their own model has — D_f and the held-out split D_val, never
the test split or a Retrain model:

- the **target** (SCRUB+R's rule, Kurmanji et al., NeurIPS 2023): D_f looks like unseen data to
  the model being unlearned when its accuracy and its mean true-class confidence (the evaluation
  attack's feature) on D_f match the same model's on D_val reweighted to D_f's class
  distribution. For a class that D_f removes entirely the reference accuracy is 0 — a model that
  never saw a class cannot predict its label — and the confidence reference is the model's own on
  held-out samples of that class.
- the **guard**: the model's accuracy on held-out samples of the classes it keeps must not fall
  more than `guard_tolerance` points below the original's.

`calibrated` stops at the first check where the target is met; when the forget accuracy crosses
the reference between two checks, or the guard fires, it restores the checked state closest to the
target (the start included) and stops; at the end of the budget it restores the closest one.
`rewind` runs the full budget and restores the closest checked state (SCRUB+R); a run whose loss
turns non-finite ends there and restores the closest state checked before it (a diverged
checkpoint is never the closest one), where the other rules raise `DivergenceError`. The
unlearner's `run_info` records `steps`, `stop_reason` and `guard_acted` (checks at which the guard
acted: the held-out accuracy below its floor at `guard_patience` consecutive checks).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import attrs
import torch
from torch import nn

from unlearnkit.core.config import config_class
from unlearnkit.core.validators import non_negative, one_of, positive
from unlearnkit.engine.evaluation import predict_logits

if TYPE_CHECKING:
    from unlearnkit.core.access import TaskView
    from unlearnkit.core.interfaces import Unlearner

STOP_RULES = ("fixed", "calibrated", "rewind")
MAX_EVAL = 2048  # samples of D_f and of D_val looked at per check (seeded subsets beyond that)
AUTO_CHECKS = 20  # checks per run when `stop_every` = 0


@config_class
class StopSettings:
    """When an iterative method stops. A method's config class inherits these fields.

    `stop`: "fixed" (the paper's length), "calibrated" (stop when D_f looks unseen; guard
    utility), "rewind" (full length, then the checked state closest to the target).
    `stop_every`: optimiser steps between checks (0 = about 20 checks over the budget).
    `stop_tolerance`: points within which D_f's accuracy and confidence must match the held-out
    reference (widened to one standard error of the difference when the sets are small).
    `guard_tolerance`: points of held-out accuracy the model may lose against the original.
    `guard_patience`: consecutive checks below that floor before the guard acts (a dip that
    recovers by the next check is not a fall).
    """

    stop: str = attrs.field(default="fixed", validator=one_of(*STOP_RULES))
    stop_every: int = attrs.field(default=0, validator=non_negative)
    stop_tolerance: float = attrs.field(default=2.0, validator=non_negative)
    guard_tolerance: float = attrs.field(default=5.0, validator=non_negative)
    guard_patience: int = attrs.field(default=2, validator=positive)


def stop_settings(config: Any) -> StopSettings:
    """The stop settings of a method's config (`fixed` for a config without any)."""
    if isinstance(config, StopSettings):
        return config
    return StopSettings()


@attrs.frozen
class Check:
    """One evaluation: D_f's accuracy and confidence against their references, and the guard's accuracy."""

    step: int
    forget_acc: float
    reference_acc: float
    forget_conf: float
    reference_conf: float
    guard_acc: float

    @property
    def distance(self) -> float:
        """How far D_f is from looking unseen, in points (the larger of the two mismatches)."""
        return max(abs(self.forget_acc - self.reference_acc), abs(self.forget_conf - self.reference_conf))


class StopMonitor:
    """Evaluates an unlearner's model every `stop_every` steps and decides when to stop.

    It registers itself as `unlearner.monitor`, so `Unlearner.unlearn` can ask it for the run's
    answer when the loss turns non-finite (`recovers`, `recover`).
    """

    def __init__(
        self, unlearner: "Unlearner", model: nn.Module, task: "TaskView", *, total_steps: int, seed: int,
        device: torch.device | str,
    ) -> None:
        self.settings = stop_settings(unlearner.config)
        self.unlearner, self.model, self.total_steps, self.device = unlearner, model, total_steps, device
        unlearner.monitor = self
        self.rule = self.settings.stop
        self.every = self.settings.stop_every or max(1, math.ceil(total_steps / AUTO_CHECKS))
        self.steps, self.reason, self.guard_count, self.stopped = 0, "fixed", 0, False
        self.below_floor = 0  # consecutive checks under the guard's floor
        self.history: list[Check] = []
        self.best: Optional[tuple[Check, dict[str, torch.Tensor]]] = None
        if self.rule == "fixed":
            return
        g = torch.Generator().manual_seed(seed)
        self.forget = _subset(task.forget, g)
        self.val = _subset(task.val, g)
        self.weights, self.gone = _class_weights(task, self.forget.y)
        start = self._evaluate(model, 0)
        self.history.append(start)
        self.guard_floor = start.guard_acc - self.settings.guard_tolerance
        self.tolerance = self._tolerance(start)
        self._remember(start, model)
        self.met_at_start = self.rule == "calibrated" and self.met(start)

    # -- the rule ------------------------------------------------------------------------------
    def check(self, model: nn.Module, step: int) -> bool:
        """After optimiser step `step` (from 1): True when the loop should stop now."""
        self.steps, self.model = step, model
        if self.rule == "fixed":
            return False
        if self.met_at_start:  # D_f looked unseen before any update: the start state is the answer
            return self._stop("target")
        if step % self.every and step != self.total_steps:
            return False
        current = self._evaluate(model, step)
        previous = self.history[-1]
        self.history.append(current)
        if current.guard_acc < self.guard_floor:
            self.below_floor += 1
            if self.below_floor >= self.settings.guard_patience:
                self.guard_count += 1
                if self.rule == "calibrated":
                    return self._stop("guard")
            return False
        self.below_floor = 0
        self._remember(current, model)
        if self.rule != "calibrated":
            return False
        if self.met(current):
            self.best = (current, _state(model))  # stop here, at the first state that meets the target
            return self._stop("target")
        if (current.forget_acc - current.reference_acc) * (previous.forget_acc - previous.reference_acc) < 0:
            return self._stop("crossed")
        return False

    def met(self, check: Check) -> bool:
        """The target: D_f's accuracy and confidence both within tolerance of their references."""
        return check.distance <= self.tolerance

    @property
    def recovers(self) -> bool:
        """Whether a non-finite loss ends the run with a checked state (`rewind`) instead of an error."""
        return self.rule == "rewind"

    def recover(self) -> nn.Module:
        """Under `rewind`, after a non-finite loss: the model with the closest state checked before it."""
        self.reason = "diverged"
        return self.finish(self.model).eval()

    def finish(self, model: nn.Module) -> nn.Module:
        """`model` with the chosen state loaded (for `calibrated` and `rewind`); records `run_info`."""
        if self.rule != "fixed":
            if self.reason == "fixed":  # the budget ran out
                self.reason = "budget" if self.rule == "calibrated" else "rewind"
            model.load_state_dict(self.best[1])
        info = {"steps": self.steps, "stop_reason": self.reason, "guard_acted": self.guard_count}
        if self.best is not None:
            info["stop_step"] = self.best[0].step
        self.unlearner.run_info.update(info)
        return model

    # -- internals -----------------------------------------------------------------------------
    def _stop(self, reason: str) -> bool:
        self.reason, self.stopped = reason, True
        return True

    def _remember(self, check: Check, model: nn.Module) -> None:
        if self.best is None or check.distance < self.best[0].distance:
            self.best = (check, _state(model))

    def _tolerance(self, start: Check) -> float:
        """`stop_tolerance`, widened to one standard error of the accuracy difference (binomial)."""
        p = min(max(start.reference_acc / 100.0, 0.05), 0.95)
        n_f, n_v = len(self.forget), max(1.0, _effective_size(self.weights, self.val.y))
        return max(self.settings.stop_tolerance, 100.0 * math.sqrt(p * (1 - p) * (1 / n_f + 1 / n_v)))

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, step: int) -> Check:
        f_logits = predict_logits(model, self.forget, device=self.device)
        v_logits = predict_logits(model, self.val, device=self.device)
        f_correct, f_conf = _correct_and_confidence(f_logits, self.forget.y)
        v_correct, v_conf = _correct_and_confidence(v_logits, self.val.y)
        v_correct = v_correct & ~self.gone[self.val.y]  # a class never seen cannot be predicted
        w = self.weights[self.val.y]
        kept = ~self.gone[self.val.y]
        return Check(
            step=step,
            forget_acc=100.0 * f_correct.float().mean().item(),
            reference_acc=100.0 * _weighted_mean(v_correct.float(), w),
            forget_conf=100.0 * f_conf.mean().item(),
            reference_conf=100.0 * _weighted_mean(v_conf, w),
            guard_acc=100.0 * (v_correct[kept].float().mean().item() if kept.any() else 1.0),
        )


def _subset(data: Any, g: torch.Generator) -> Any:
    if len(data) <= MAX_EVAL:
        return data
    return data.subset(torch.randperm(len(data), generator=g)[:MAX_EVAL].sort().values)


def _class_weights(task: "TaskView", forget_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class weights that give D_val D_f's class distribution, and the classes D_f removes entirely."""
    c = task.num_classes
    p = torch.bincount(forget_y, minlength=c).double() / len(forget_y)
    q = torch.bincount(task.val.y, minlength=c).double()
    weights = torch.where(q > 0, p / q.clamp(min=1), torch.zeros_like(p))
    gone = torch.zeros(c, dtype=torch.bool)
    if task.forget_spec.kind == "class":
        gone[task.forget_spec.value] = True
    return weights, gone


def _correct_and_confidence(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.argmax(1) == y, torch.softmax(logits.double(), 1).gather(1, y[:, None]).squeeze(1)


def _weighted_mean(values: torch.Tensor, w: torch.Tensor) -> float:
    total = w.sum()
    return float((values.double() * w).sum() / total) if total > 0 else 0.0


def _effective_size(weights: torch.Tensor, y: torch.Tensor) -> float:
    w = weights[y]
    return float(w.sum() ** 2 / (w**2).sum()) if w.sum() > 0 else 0.0


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
