"""The component interfaces. Their docstrings are the contract the test suites check."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional, Sequence

import attrs
import numpy as np
import torch
from torch import nn

from unlearnkit.core.access import AUDIT_POPULATIONS, TASK_PARTS, PopulationView, TaskView
from unlearnkit.core.errors import DivergenceError

__all__ = ["AUDIT_POPULATIONS", "TASK_PARTS", "Audit", "AuditResult", "GradientCombiner", "MembershipAttack", "Sampler", "Unlearner"]


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """`device`, else the model's device, else CPU."""
    if device is not None:
        return torch.device(device)
    if model is not None:
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold equal parameters and buffers (an unlearning run that changed nothing)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


class Unlearner(ABC):
    """An unlearning method.

    Contract:
    - `unlearn(model, task, seed=, device=)` returns a *new* model of the same architecture with
      the forget set removed; the input `model` is never mutated (parameters, buffers, mode).
      It hands `run` a private copy of the model on `device` and a view of the task, inside a
      torch RNG state seeded with `seed`; subclasses implement `run`.
    - The method reads only the parts of the task named in `reads` (a subset of `TASK_PARTS`):
      `forget` = D_f, `retain` = the accessible retain subset D̂_r (γ·|D_r| samples),
      `retain_full` = all of D_r, `train` = D_r ∪ D_f, `val` = held-out non-members. The task it
      receives is a view; reading an undeclared part raises `DataAccessError`. The test split is
      never readable. Metadata (`num_classes`, `input_shape`, `recipe`, ...) always is.
    - Same config, seed, data and device give the same result on CPU.
    - Runs on `device` (default: where the model lives), CPU or CUDA.
    - A NaN or infinite loss raises `unlearnkit.DivergenceError` naming the method and step;
      under `stop = "rewind"` the run instead returns the closest state its `StopMonitor`
      checked before it (`run_info["stop_reason"]` = "diverged").
    - An iterative method's config may inherit `unlearnkit.StopSettings`; with a `stop` rule other
      than "fixed" the method also reads `forget` and `val` (the rule compares them), and its loop
      calls a `unlearnkit.StopMonitor`.
    - After `unlearn`, `run_info` holds what the run reports about itself (e.g. `steps`,
      `stop_reason`) and, set by `unlearn` itself, `unchanged`: whether the weights returned equal
      the ones given (a stop rule restored the original, or no step moved anything) — not a deletion.
      The bench copies it into the results row.
    - A divergence names the config fields to lower (`divergence_settings`) with their values.
    - `search_space(trial, space)` declares what `unlearnkit tune` may change: the shared axes
      and the method's own knobs, its length capped at 20 % of Retrain's optimiser steps, its
      default a point of the space; every point builds a valid config.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    #: The retain access γ its paper evaluates it with (the bench's default for this method).
    default_retain_access: ClassVar[float] = 1.0
    #: Its paper's ablations: row label -> config overrides (the bench's `ablation` table).
    ablations: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The config fields a user lowers when a run diverges (named, with their values, in the error).
    divergence_settings: ClassVar[tuple[str, ...]] = ("lr",)

    def __init__(self, config: Any):
        self.config = config
        self.run_info: dict[str, Any] = {}
        self.monitor: Any = None  # the run's `unlearnkit.StopMonitor`, when its loop made one
        if getattr(config, "stop", "fixed") != "fixed":  # the stop rule looks at D_f against held-out D_val
            self.reads = type(self).reads | {"forget", "val"}

    def unlearn(
        self,
        model: nn.Module,
        task: Any,
        *,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool = False,
    ) -> nn.Module:
        """Return a new model that has forgotten `task.forget`; `model` is left untouched."""
        device = resolve_device(device, model)
        if not isinstance(task, TaskView):
            task = task.view(self.reads, who=type(self).__name__)
        work = copy.deepcopy(model).to(device)
        self.run_info, self.monitor = {}, None
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            try:
                new = self.run(work, task, seed=seed, device=device, progress=progress)
            except DivergenceError as exc:
                if self.monitor is None or not self.monitor.recovers:
                    message = str(exc)
                    if message.endswith(DivergenceError.GENERIC_ADVICE):
                        message = message[: -len(DivergenceError.GENERIC_ADVICE)] + self.divergence_advice()
                    raise DivergenceError(message) from None
                new = self.monitor.recover()
        self.run_info["unchanged"] = same_weights(new, model)
        return new

    def divergence_advice(self) -> str:
        """What to lower after a divergence: `divergence_settings` with their current values."""
        fields = [f for f in self.divergence_settings if hasattr(self.config, f)]
        if not fields:
            return DivergenceError.GENERIC_ADVICE
        values = {f: getattr(self.config, f) for f in fields}
        return "lower " + " or ".join(f"`{f}` (now {v})" if v is not None else f"`{f}` (now set by the method's rule from the task's recipe: "
                                      "give it a smaller number)" for f, v in values.items())

    @abstractmethod
    def run(self, model: nn.Module, task: TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        """Unlearn `task.forget` from `model` (a private copy: modify it or return another)."""

    @classmethod
    def search_space(cls, trial: Any, space: Any) -> Optional[dict[str, Any]]:
        """The config overrides of one tuning trial (`unlearnkit tune`), or None: declares no space.

        `trial` is an Optuna trial, `space` an `unlearnkit.tune.SearchSpace`: the method's default
        config (`space.default`), the tuning cells' sizes and the shared axes (`space.lr`,
        `space.weight_decay`, `space.batch_size`), own knobs (`space.float`, `space.int`,
        `space.choice`) and lengths capped at `space.fraction` of Retrain's optimiser steps
        (`space.repeats`, `space.share`). Each parameter is named after the config field it sets,
        and the dict returned is exactly the fields suggested; every point builds a valid config,
        and the default is a point of the space (its length cut to the cap when it exceeds it).
        """
        return None


class MembershipAttack(ABC):
    """A membership-inference attack on a classifier's outputs.

    Contract:
    - `fit(members, non_members)` trains on `(logits, labels)` pairs of samples known to be
      members (label 1) and non-members (label 0); it reads nothing else and mutates no input.
      Returns `self`.
    - `predict_proba(logits, labels)` returns P(member) per sample, a float tensor in [0, 1] of
      shape `(n,)`. If `differentiable` is true it is differentiable w.r.t. `logits`
      (finite gradients), so it can serve as a loss (LTU's MI bank); otherwise the result
      carries no graph.
    - Deterministic for a given config (including its `seed`) and inputs.
    """

    differentiable: ClassVar[bool] = False

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def fit(
        self, members: tuple[torch.Tensor, torch.Tensor], non_members: tuple[torch.Tensor, torch.Tensor]
    ) -> "MembershipAttack":
        """Train on members' and non-members' `(logits, labels)`."""

    @abstractmethod
    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """P(member) for each sample, in [0, 1]."""


class Sampler(ABC):
    """Draws LTU query sets from the accessible retain pool D̂_r.

    Contract:
    - `prepare(pool_x, pool_y, model)` is called once per pool with every accessible sample
      and the frozen original model; it may cache per-pool features (it must not mutate
      the model or the tensors). It is the only place pool-wide work may happen.
    - `sample(support_x, support_y, k, generator)` returns a 1-D `long` tensor of exactly
      `min(k, len(pool))` distinct positions into the pool (0 <= i < len(pool)). Positions
      index the pool given to `prepare`, so nothing outside D̂_r (in particular D_f) can be
      drawn. Its cost is at most O(len(pool) · len(support)).
    - The same `generator` state gives the same positions.
    """

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        """Cache whatever the sampler needs about the pool."""

    @abstractmethod
    def sample(
        self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Positions in the pool of a query set for this support batch."""


class GradientCombiner(ABC):
    """Combines the remembering and forgetting gradients into one update direction.

    Contract:
    - `combine(g_remember, g_forget)` takes two sequences of tensors with matching shapes
      (one per parameter) and returns a new list of tensors of the same shapes and dtypes.
      All tensors are treated as one flattened vector. Inputs are never modified.
    - Finite on zero or tiny vectors; never divides by zero.
    - `reset()` forgets any state (a combiner may count iterations); call it before a run.
    """

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def combine(self, g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One update direction from the two gradients."""

    def reset(self) -> None:
        """Forget state between runs; stateless combiners need nothing."""


@attrs.frozen
class AuditResult:
    """What an audit found for one method: headline figures and one value per forget example."""

    summary: dict[str, float]
    per_example: dict[str, np.ndarray]


class Audit(ABC):
    """A per-example privacy audit of one unlearning method, from populations of its outputs.

    Contract:
    - `run(populations)` reads only the populations named in `reads` (a subset of
      `AUDIT_POPULATIONS`); `populations` is a read-only view, and reading an undeclared one
      raises `DataAccessError`. What each holds (`unlearnkit.data.populations`):
      `repeated` — the NeurIPS 2023 protocol: the logits on the forget set of N runs of the
      method from one original model and of N Retrain models, the labels, and the mean retain
      and test accuracies of each group; `shadow` — U-LiRA's: the logits on the forget set of
      N shadow models trained on random halves of the training split and unlearned on their
      half of the forget set, the labels, and which model forgot which example (the others
      never trained on it). An audit sees model outputs only: no weights, no data.
    - Returns an `AuditResult`: `summary` maps names to finite floats (the same names for any
      input), `per_example` maps names to float arrays of one value per forget example, in
      the order of the populations' columns. Inputs are never modified (their arrays are
      read-only).
    - Deterministic: the same populations give the same result.
    - Inputs it cannot audit (fewer than `min_models` models per population, NaN or infinite
      logits) raise `ValueError` naming the problem; the audit command checks `min_models`
      before it builds a model.
    - `headline` names the summary figures that tables show, in order.
    """

    reads: ClassVar[frozenset[str]] = frozenset()
    min_models: ClassVar[int] = 2
    headline: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def run(self, populations: PopulationView) -> AuditResult:
        """Audit the method whose outputs `populations` holds."""
