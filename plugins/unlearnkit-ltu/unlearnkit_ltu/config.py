"""`LtuConfig`: every setting of the LTU unlearner, the paper's ablations included."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import attrs

from unlearnkit import StopSettings, config_class
from unlearnkit.validators import FieldError, in_range, non_negative, one_of, positive


def _names(minimum: int) -> Any:
    """A tuple of at least `minimum` distinct, non-empty component names."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if any(not isinstance(name, str) or not name.strip() for name in value):
            raise FieldError(attribute.name, f"names must be non-empty strings, got {list(value)!r}")
        if len(set(value)) != len(value):
            raise FieldError(attribute.name, f"names must be distinct, got {list(value)!r}")
        if len(value) < minimum:
            raise FieldError(attribute.name, f"needs at least {minimum} name(s), got {list(value)!r}")

    return check


def _configs_for(names_field: str) -> Any:
    """Every key of a per-component config table names a component listed in `names_field`."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        names = getattr(instance, names_field)
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise FieldError(attribute.name, f"configures {unknown!r}, which are not in {names_field} {list(names)!r}")
        bad = sorted(k for k, v in value.items() if not isinstance(v, dict))
        if bad:
            raise FieldError(attribute.name, f"each entry must be a table of settings; {bad!r} is not")

    return check


@config_class
class LtuConfig(StopSettings):
    """Settings of `ltu` (Learning to Unlearn, Huang et al., ECCV 2024).

    Length: `iterations` meta-updates T, each drawing one forget batch (cycling through seeded
    permutations of D_f); with `iterations = 0` (default) T costs `budget` of retraining with the
    task's recipe (`iterations_for`). One configuration for every regime, chosen on the `robust`
    grid's cells with tuning seeds 3 and 4 by its worst cell (docs/ltu.md, round 6): η = 5e-4
    and α = 0.05 at MNIST-1D's recipe lr 0.05, β = 1 (LTU.md), `stop = "fixed"` (the paper's; the
    core stop rule is a setting). η and α are SGD steps on the trained model, so on another task
    each keeps that ratio to the recipe's lr (the baselines' translation rule, docs/baselines.md):
    η = `LR_RATIO` × and α = `INNER_LR_RATIO` × the recipe's lr (None = by rule; `step_sizes`). [choice] Each
    phase sees about one forget batch of samples: the three query sets hold `query_size` each
    (3 × 21 ≈ 64) and the audit set `audit_size` forget samples (the first of B_f) plus as many
    of D̂_r (2 × 32 = 64). `max_grad_norm` (beyond the paper, off) bounds each feedback gradient.

    Step size (beyond the paper, on): with `polyak`, each meta-tune step is at most the Polyak
    step, α_t = min(α, L_tune / ‖∇L_tune‖²), and the meta-update's learning rate keeps its ratio
    to the remembering one, η_t = η · α_t / α (the forgetting one without remembering feedback):
    the paper's fixed α and η wherever a step of α does not overshoot L_tune's first-order zero
    (CNN1D), and steps that follow the loss's scale where it does (a memorising BatchNorm
    ResNet, whose random-label gradient is 10–50× larger). `polyak = false`: α and η fixed.
    With `curvature` (beyond the paper, on) α_t is also at most 1/|λ|, λ = gᵀHg / ‖g‖² the
    curvature of L_tune along its gradient g: on a sharp ViT the random-label loss is concave
    along g (λ ≈ −600) and the meta-gradient's second-order term, −α_t H ∇L_test(θ'), multiplied
    the update 8-fold and collapsed the model in one iteration (docs/ltu.md). It acts on
    second-order runs only (`meta_opt`, not `first_order`): the term it bounds exists only there.
    `batch_norm`: "batch" normalises the meta-optimisation's forwards with their batch's
    statistics and, at the end, recomputes the running statistics over D̂_r under the final
    weights; "running" uses the running statistics throughout and leaves them as they were.

    Components are looked up by name in the registry, so a user's own sampler, attack or
    combiner plugs in by naming it here. The paper's ablations are settings:
    `forget_feedback=False` (w/o ForFeed), `remember_feedback=False` (w/o RemFeed),
    `meta_opt=False` (w/o MetaOpt), `combiner="sum"` (w/ GradAdd), `combiner="alternate"`
    (w/ iterative Grad); see `unlearnkit_ltu.ABLATIONS`.
    """

    LR_RATIO: ClassVar[float] = 0.01  # η / the recipe's lr: 5e-4 at MNIST-1D's 0.05
    INNER_LR_RATIO: ClassVar[float] = 1.0  # α / the recipe's lr: 0.05 there

    iterations: int = attrs.field(default=0, validator=non_negative)  # T; 0 = from `budget`
    budget: float = attrs.field(default=0.2, validator=positive)  # with iterations = 0: T costs this fraction of retraining
    forget_batch_size: int = attrs.field(default=64, validator=positive)
    query_size: int = attrs.field(default=21, validator=positive)  # n_q, per sampler: 3 sets ≈ one forget batch
    audit_size: int = attrs.field(default=32, validator=positive)  # samples of B_f, and as many of D̂_r, in A
    inner_lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))  # α, eq. 2 (with `polyak`: the largest step); None = by rule
    beta: float = attrs.field(default=1.0, validator=non_negative)  # β, eq. 4
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))  # η, eq. 5; None = by rule
    momentum: float = attrs.field(default=0.9, validator=in_range(0.0, 1.0, high_open=True))
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    max_grad_norm: float = attrs.field(default=0.0, validator=non_negative)  # beyond the paper: bound on ‖g_r‖, ‖g_f‖; 0 = off
    polyak: bool = True  # beyond the paper: α_t = min(α, L_tune / ‖∇L_tune‖²), η_t = η α_t / α
    curvature: bool = True  # beyond the paper: α_t also at most 1/|gᵀHg / ‖g‖²|, g = ∇L_tune
    batch_norm: str = attrs.field(default="batch", validator=one_of("batch", "running"))  # BatchNorm statistics in the meta-optimisation
    samplers: tuple[str, ...] = attrs.field(default=("feature-nn", "label-nn", "random"), validator=_names(1))
    sampler_configs: dict[str, dict[str, Any]] = attrs.field(factory=dict, validator=_configs_for("samplers"))
    bank: tuple[str, ...] = attrs.field(default=("mi-logreg", "mi-mlp-sorted", "mi-mlp-label"), validator=_names(2))
    bank_configs: dict[str, dict[str, Any]] = attrs.field(factory=dict, validator=_configs_for("bank"))
    bank_balance: bool = False  # subsample D̂_r and D_val to equal sizes before fitting the bank
    combiner: str = "harmonize"
    combiner_config: dict[str, Any] = attrs.field(factory=dict)
    remember_feedback: bool = True
    forget_feedback: bool = True
    meta_opt: bool = True
    first_order: bool = False

    def __attrs_post_init__(self) -> None:
        if not (self.remember_feedback or self.forget_feedback):
            raise FieldError("forget_feedback", "remember_feedback and forget_feedback cannot both be false (no gradient left)")
        if not self.combiner.strip():
            raise FieldError("combiner", f"must name a registered combiner, got {self.combiner!r}")


#: The cost of one LTU iteration in plain SGD steps of the same batch size (both feedbacks,
#: second order; `benchmarks/ltu_cost.py` measures 7.6–8.7 on CNN1D): turns `budget` into T.
ITERATION_COST = 8.0
#: The same with `curvature`'s two Hessian-vector products (measured 12.7–13.0 against 8.6–8.8
#: without them, in one session).
CURVATURE_ITERATION_COST = 12.0


def iteration_cost(config: LtuConfig) -> float:
    """One iteration of `config` in plain SGD steps: `CURVATURE_ITERATION_COST` where the curvature
    bound acts (second order), else `ITERATION_COST`."""
    second_order = config.meta_opt and not config.first_order
    return CURVATURE_ITERATION_COST if config.curvature and second_order else ITERATION_COST


def step_sizes(config: LtuConfig, task: Any) -> tuple[float, float]:
    """(η, α): `config.lr` and `config.inner_lr`, each left None taken as its ratio to the task
    recipe's lr (`LR_RATIO`, `INNER_LR_RATIO`)."""
    return (
        config.lr if config.lr is not None else config.LR_RATIO * task.recipe.lr,
        config.inner_lr if config.inner_lr is not None else config.INNER_LR_RATIO * task.recipe.lr,
    )


def iterations_for(config: LtuConfig, task: Any) -> int:
    """T: `config.iterations`, or when 0 the iterations costing `config.budget` of retraining
    with the task's recipe (`epochs` passes over |D_r| = |D̂_r| / γ in batches of `batch_size`)."""
    if config.iterations:
        return config.iterations
    recipe = task.recipe
    retain = len(task.retain) / task.retain_access
    retrain_steps = recipe.epochs * retain / recipe.batch_size
    return max(1, round(config.budget * retrain_steps / iteration_cost(config)))


#: The paper's ablations (its Tables 3 and 4) as overrides of `LtuConfig`.
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "wo-forfeed": {"forget_feedback": False},
    "wo-remfeed": {"remember_feedback": False},
    "wo-metaopt": {"meta_opt": False},
    "gradadd": {"combiner": "sum"},
    "iterative": {"combiner": "alternate"},
    "first-order": {"first_order": True},
}
