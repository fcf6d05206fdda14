"""The gradient combiners: `harmonize` (LTU eq. 12), `sum`, `pcgrad` and `alternate`.

Each treats its two gradient lists as one flattened vector each (global, not per layer) and
returns new tensors of the inputs' shapes and dtypes; inputs are never modified.
"""

from __future__ import annotations

from typing import Sequence

import attrs
import torch

from unlearnkit import GradientCombiner, config_class
from unlearnkit.validators import one_of

from unlearnkit_harmonize.vector import axpy, check_gradients, dots, scaled_sum


@config_class
class HarmonizeConfig:
    """Which gradient is protected when the two conflict (g_r·g_f < 0).

    `remember` (LTU's default): the forget gradient loses its component along g_r.
    `forget`: the mirror image, g_r loses its component along g_f.
    `both`: PCGrad's symmetric projection, each loses its component along the other.
    """

    protect: str = attrs.field(default="remember", validator=one_of("remember", "forget", "both"))


@config_class
class SumConfig:
    """No settings: g = g_r + g_f (the paper's `w/ GradAdd` ablation)."""


@config_class
class PCGradConfig:
    """No settings: PCGrad (Yu et al., 2020) with two tasks, symmetric projection on conflict."""


@config_class
class AlternateConfig:
    """No settings: g_f on odd iterations, g_r on even ones (the paper's `w/ iterative Grad`)."""


def _sum(remember: list[torch.Tensor], forget: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.add(r, f) for r, f in zip(remember, forget)]


def _pcgrad(remember: list[torch.Tensor], forget: list[torch.Tensor]) -> list[torch.Tensor]:
    """g_r' + g_f' with g_r' = g_r − (g_r·g_f/‖g_f‖²) g_f and g_f' = g_f − (g_f·g_r/‖g_r‖²) g_r on conflict."""
    d = dots(remember, forget)
    if not d.conflict:
        return _sum(remember, forget)
    alpha = 1.0 - d.ratio_onto_remember()  # coefficient of g_r in g_r' + g_f'
    beta = 1.0 - d.ratio_onto_forget()  # coefficient of g_f
    return [scaled_sum(r, alpha, f, beta) for r, f in zip(remember, forget)]


class Harmonize(GradientCombiner):
    """LTU's gradient harmonization (eq. 12): add the two gradients, removing the conflict first.

    With `protect="remember"`: if g_r·g_f ≥ 0 the result is g_r + g_f; otherwise
    g_f' = g_f − (g_f·g_r / ‖g_r‖²) g_r and the result is g_r + g_f', so that
    result·g_r = ‖g_r‖² (forgetting never undoes remembering). A zero g_r or g_f leaves
    the other unchanged.
    """

    config: HarmonizeConfig

    def __init__(self, config: HarmonizeConfig | None = None):
        super().__init__(config or HarmonizeConfig())

    def combine(self, g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """g_r + g_f with the protected gradient's conflicting component removed from the other."""
        remember, forget = check_gradients(g_remember, g_forget)
        protect = self.config.protect
        if protect == "both":
            return _pcgrad(remember, forget)
        d = dots(remember, forget, rr=protect == "remember", ff=protect == "forget")
        if not d.conflict:
            return _sum(remember, forget)
        if protect == "remember":
            # eq. 12: g_r + g_f − (g_f·g_r/‖g_r‖²) g_r  =  g_f + (1 − g_f·g_r/‖g_r‖²) g_r
            alpha = 1.0 - d.ratio_onto_remember()
            return [axpy(f, r, alpha) for r, f in zip(remember, forget)]
        # eq. 12 mirrored: g_r − (g_r·g_f/‖g_f‖²) g_f + g_f
        alpha = 1.0 - d.ratio_onto_forget()
        return [axpy(r, f, alpha) for r, f in zip(remember, forget)]


class SumCombiner(GradientCombiner):
    """g_r + g_f, always."""

    def __init__(self, config: SumConfig | None = None):
        super().__init__(config or SumConfig())

    def combine(self, g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The element-wise sum."""
        return _sum(*check_gradients(g_remember, g_forget))


class PCGrad(GradientCombiner):
    """PCGrad with two tasks: on conflict, each gradient is projected onto the other's normal plane.

    The result does not depend on which argument is which: combine(a, b) == combine(b, a).
    """

    def __init__(self, config: PCGradConfig | None = None):
        super().__init__(config or PCGradConfig())

    def combine(self, g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """g_r' + g_f' (both projected when g_r·g_f < 0), else g_r + g_f."""
        return _pcgrad(*check_gradients(g_remember, g_forget))


class Alternate(GradientCombiner):
    """The forget gradient on odd iterations, the remember gradient on even ones.

    The first call after construction or `reset()` is iteration 1 and returns (a copy of) g_f.
    """

    def __init__(self, config: AlternateConfig | None = None):
        super().__init__(config or AlternateConfig())
        self.iteration = 0

    def reset(self) -> None:
        """Restart the count: the next call is iteration 1."""
        self.iteration = 0

    def combine(self, g_remember: Sequence[torch.Tensor], g_forget: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """A copy of g_f on odd iterations, of g_r on even ones."""
        remember, forget = check_gradients(g_remember, g_forget)
        self.iteration += 1
        chosen = forget if self.iteration % 2 == 1 else remember
        return [g.clone() for g in chosen]
