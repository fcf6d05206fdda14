"""Search spaces: the shared axes every method is tuned over, and the budget that caps its length.

A method declares its space beside itself (`Unlearner.search_space(trial, space)`), with the
helpers of the `SearchSpace` it is given: each suggests one config field, named after it, over a
range widened just enough to contain the method's default (`space.default`, its config class's
values read at run time). Lengths (`repeats`, `fraction`) are capped so that no sampled point
costs more than `space.fraction` (20 %) of Retrain's optimiser steps on any tuning cell.

Cost is counted in Retrain's optimiser steps: a step on a batch of b samples costs b / B, B the
recipe's batch, so one pass over n samples costs n / B whatever its batch size (a larger batch
buys no longer run) and Retrain costs `epochs · ⌈|D_r| / B⌉`. Nothing here imports Optuna: a
`trial` is anything with Optuna's `suggest_int`, `suggest_float` and `suggest_categorical`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import attrs

FRACTION = 0.2  # a method's cap, as a fraction of Retrain's optimiser steps (DeepUnlearn's 20 %)
LR_RANGE = (1e-5, 1e-1)  # log-uniform, every method's learning rate
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2, 1e-1)  # DeepUnlearn's log range on a grid, with 0 (plain SGD) and 5e-4
BATCH_SIZES = (64, 128, 256)


@attrs.frozen
class Cell:
    """The sizes of one tuning cell and seed that a method's cost depends on."""

    forget: int  # |D_f|
    retain: int  # |D̂_r|, the accessible retain set (γ·|D_r|)
    retain_full: int  # |D_r|
    batch_size: int  # B, the original recipe's batch
    epochs: int  # the original recipe's epochs

    @property
    def retrain_steps(self) -> int:
        """Retrain's optimiser steps: `epochs` passes over D_r in batches of B."""
        return self.epochs * math.ceil(self.retain_full / self.batch_size)

    def cost(self, samples: float) -> float:
        """Retrain steps that processing `samples` samples (forward and backward) costs."""
        return samples / self.batch_size


def cell_of(task: Any) -> Cell:
    """The `Cell` of an `UnlearningTask` (its forget set, γ and recipe)."""
    return Cell(forget=len(task.forget), retain=len(task.retain), retain_full=len(task.retain_full),
                batch_size=task.recipe.batch_size, epochs=task.recipe.epochs)


@attrs.frozen
class SearchSpace:
    """What a method's `search_space` is given: its `default` config, the tuning `cells` and the cap.

    Every helper suggests the config field `name` and returns its value; the method returns the
    fields it suggested as a dict of config overrides.
    """

    default: Any
    cells: tuple[Cell, ...]
    fraction: float = FRACTION

    # -- the shared axes -------------------------------------------------------------------
    def shared(self, trial: Any, *, weight_decay: bool = True) -> dict[str, Any]:
        """`lr`, `weight_decay` (unless the method has none, e.g. Adam's) and `batch_size`."""
        decay = {"weight_decay": self.weight_decay(trial)} if weight_decay else {}
        return {"lr": self.lr(trial), **decay, "batch_size": self.batch_size(trial)}

    def lr(self, trial: Any, name: str = "lr") -> float:
        """The learning rate, log-uniform over [1e-5, 1e-1]."""
        return self.float(trial, name, *LR_RANGE, log=True)

    def weight_decay(self, trial: Any, name: str = "weight_decay") -> float:
        """Weight decay: 0, 5e-4 or a power of ten in [1e-5, 1e-1]."""
        return self.choice(trial, name, WEIGHT_DECAYS)

    def batch_size(self, trial: Any, name: str = "batch_size") -> int:
        """The batch size, one of 64, 128, 256."""
        return self.choice(trial, name, BATCH_SIZES)

    # -- a method's own knobs --------------------------------------------------------------
    def float(self, trial: Any, name: str, low: float, high: float, *, log: bool = False) -> float:
        """A float in [low, high], widened to contain the default."""
        return trial.suggest_float(name, *self._around(name, low, high), log=log)

    def int(self, trial: Any, name: str, low: int, high: int, *, log: bool = False) -> int:
        """An integer in [low, high], widened to contain the default."""
        return trial.suggest_int(name, *self._around(name, low, high), log=log)

    def choice(self, trial: Any, name: str, choices: Sequence[Any]) -> Any:
        """One of `choices`, the default added when it is not among them."""
        value = self._default(name)
        return trial.suggest_categorical(name, list(choices) if value is None or value in choices else [*choices, value])

    # -- lengths, capped by the budget -----------------------------------------------------
    def repeats(self, trial: Any, name: str, samples: Callable[[Cell], float]) -> int:
        """How many times (epochs, iterations) to repeat a unit of work that processes
        `samples(cell)` samples: log-uniform over 1 .. the most that fit the budget on every cell."""
        return trial.suggest_int(name, 1, self.max_repeats(samples), log=True)

    def max_repeats(self, samples: Callable[[Cell], float]) -> int:
        """The most repeats of a unit processing `samples(cell)` samples that cost at most
        `fraction` of Retrain on every cell (at least 1)."""
        return max(1, min(math.floor(self.fraction * c.retrain_steps / c.cost(samples(c))) for c in self.cells))

    def share(self, trial: Any, name: str, low: float, cost_per_unit: Callable[[Cell], float]) -> float:
        """A length given as a fraction of Retrain (LTU's `budget`): from `low` to the most whose
        cost, `cost_per_unit(cell)` times the value in Retrain's steps per Retrain step, fits."""
        high = min(self.fraction / cost_per_unit(c) for c in self.cells)
        return trial.suggest_float(name, min(low, high), high, log=True)

    def _around(self, name: str, low: Any, high: Any) -> tuple[Any, Any]:
        """[low, high] widened to contain the default (a default left to a rule, None, widens nothing)."""
        value = self._default(name)
        return (low, high) if value is None else (min(low, value), max(high, value))

    def _default(self, name: str) -> Any:
        if not hasattr(self.default, name):
            raise AttributeError(f"search space parameter {name!r} is not a field of {type(self.default).__name__}; "
                                 "name each parameter after the config field it sets")
        return getattr(self.default, name)


class DefaultTrial:
    """A trial that answers every suggestion with the default's value, cut into the range a
    length's cap allows: the first trial of every study (`default_point`). A default of None (a
    setting the method's translation rule resolves at run time) stays None."""

    def __init__(self, default: Any):
        self.default = default
        self.params: dict[str, Any] = {}
        self.cut: dict[str, tuple[Any, Any]] = {}  # name -> (default, the value cut to the budget)

    def _take(self, name: str, value: Any) -> Any:
        self.params[name] = value
        return value

    def _number(self, name: str, low: Any, high: Any) -> Any:
        value = getattr(self.default, name)
        if value is None:
            return self._take(name, None)
        inside = min(max(value, low), high)
        if inside != value:
            self.cut[name] = (value, inside)
        return self._take(name, inside)

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return self._number(name, low, high)

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return self._number(name, low, high)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = getattr(self.default, name)
        if value is not None and value not in choices:
            raise ValueError(f"the default {name} = {value!r} is not among the choices {list(choices)!r}")
        return self._take(name, value)


def sample(cls: type, trial: Any, space: SearchSpace) -> dict[str, Any]:
    """The config overrides `cls.search_space` draws for `trial`; the fields suggested must be
    exactly the ones returned, with the same values (so a trial's parameters are its config)."""
    overrides = cls.search_space(trial, space)
    if overrides is None:
        raise TypeError(f"{cls.__name__} declares no search space (define the classmethod `search_space`)")
    return dict(overrides)


def default_point(cls: type, space: SearchSpace) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The default as a point of the space, with each length cut to the budget where the default
    exceeds it, and what was cut (name -> (default, cut value))."""
    trial = DefaultTrial(space.default)
    overrides = sample(cls, trial, space)
    if overrides != trial.params:
        raise ValueError(f"{cls.__name__}.search_space returned {overrides!r} but suggested {trial.params!r}; "
                         "return exactly the fields it suggests")
    return overrides, trial.cut
