"""The `ltu` unlearner: draws batches, query sets and MI models, and runs the meta-optimisation.

`LtuUnlearner.run` is `LtuUnlearner.prepare(...)` followed by `LtuRun.iteration()` T times;
`prepare` and `iteration` are public so that a benchmark times exactly what `run` does.

Under torchrun every rank draws the same batches, labels, query sets and bank models (the
same seeded streams), runs the inner steps on the whole support and audit sets, and takes
the meta-test losses on its share only; the meta-test gradients are summed across ranks
before harmonization, so every rank applies the global update (see `unlearnkit_ltu.meta`).

Batch normalisation **[choice]** (`batch_norm`): the model stays in eval mode; with "batch"
(default) its BatchNorm layers normalise every forward of the meta-optimisation (at θ, θ', θ'')
with that batch's statistics, as MAML implementations do; the query sets, neighbours of B_f
rather than a draw of the data, are normalised together with B_f (`support_context`). No forward
updates the running statistics (MAML implementations in train mode let every forward, D_f's
included, move them); at the end they are recomputed over D̂_r under the final weights
(`uk.recompute_batch_norm`), so the returned model's eval-mode function is the one its weights
were trained as, and D_f never enters its buffers (measured: with the original's buffers kept, a
torchvision ResNet-18 whose weights LTU had moved collapsed in eval mode, docs/ltu.md "Decisions"). With "running" every
forward uses the running statistics and they stay the original's (measured: a far sharper
random-label loss on a memorising ResNet).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from typing import Any, ClassVar, Optional, Sequence

import torch
from torch import nn

import unlearnkit as uk
from unlearnkit import MembershipAttack, Sampler, UsageError
from unlearnkit.engine import distributed
from unlearnkit_ltu import meta
from unlearnkit_ltu.config import ABLATIONS, LtuConfig, iterations_for, step_sizes

WHO = "ltu"
LOGIT_EPS = 1e-6
#: What each checked value is, for the divergence message.
DIVERGED = {
    "remember_tune": "the random-label loss on B_f (eq. 6)",
    "remember_test": "the query loss at θ' (eq. 3)",
    "forget_tune": "the MI loss of the support model (eq. 11)",
    "forget_test": "the MI loss of the query model at θ''",
    "gradient": "the meta-update's gradient",
}


def stream(seed: int, name: str) -> torch.Generator:
    """An independent CPU generator for one random stream of a run (batches, labels, ...)."""
    digest = hashlib.sha256(f"unlearnkit-ltu:{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class IndexStream:
    """Positions 0..n-1 in batches of `min(size, n)`: seeded permutations, remainder dropped."""

    def __init__(self, n: int, size: int, generator: torch.Generator):
        self.n, self.size, self.generator = n, min(size, n), generator
        self._order = torch.empty(0, dtype=torch.long)
        self._at = 0

    def next(self) -> torch.Tensor:
        """The next batch of distinct positions."""
        if self._at + self.size > len(self._order):
            self._order, self._at = torch.randperm(self.n, generator=self.generator), 0
        batch = self._order[self._at : self._at + self.size]
        self._at += self.size
        return batch


class LtuRun:
    """One LTU run in progress: the model being unlearned, its data, components and optimizer."""

    def __init__(self, config: LtuConfig, model: nn.Module, task: Any, *, seed: int, device: torch.device, progress: bool = False):
        cfg = self.config = config
        self.model, self.device, self.step = model, device, 0
        self.lr, self.inner_lr = step_sizes(cfg, task)  # η, α
        self.clipped = 0  # iterations where max_grad_norm scaled g_r or g_f down
        self.scales: list[float] = []  # α_t / α of every iteration (1 without `polyak`)
        model.eval()  # BatchNorm: see the module docstring
        self.params: meta.Params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        second_order = cfg.meta_opt and not cfg.first_order
        self.forward = meta.functional_forward(
            model, dict(model.named_buffers()), batch_stats=cfg.batch_norm == "batch", twice_differentiable=second_order
        )
        self.curvature = cfg.curvature and second_order  # it bounds the second-order term, so only where there is one
        # with batch statistics the query sets (neighbours of B_f) are normalised together with B_f
        self.support_context = cfg.batch_norm == "batch" and uk.has_batch_norm(model)
        self.num_classes = int(task.num_classes)

        forget, pool = task.forget, task.retain  # D_f and D̂_r
        _check_sizes(len(forget), len(pool), len(task.val) if cfg.forget_feedback else None)
        # the batch size in which `finish` recomputes the BatchNorm statistics over D̂_r
        self.recipe_batch = int(task.recipe.batch_size) if self.support_context else None
        self.forget_x, self.forget_y = forget.x.to(device), forget.y.to(device)
        self.pool_x, self.pool_y = pool.x.to(device), pool.y.to(device)
        self.forget_batches = IndexStream(len(forget), cfg.forget_batch_size, stream(seed, "forget"))
        self.audit_size = min(cfg.audit_size, self.forget_batches.size)
        self.retain_batches = IndexStream(len(pool), self.audit_size, stream(seed, "retain"))  # |B_r| = audit forget part
        self.label_generator = stream(seed, "labels")
        self.sampler_generator = stream(seed, "samplers")
        self.bank_generator = stream(seed, "bank")
        self.norm_generator = stream(seed, "batch-norm")

        # the set-up counts in UT: one progress stage, whose step names say where its time goes
        steps = len(cfg.samplers) * cfg.remember_feedback + len(cfg.bank) * cfg.forget_feedback
        setup = uk.progress_bar(desc=f"{WHO} set-up", total=steps, unit="step", enabled=progress)
        start = time.perf_counter()
        self.samplers: list[Sampler] = self._build_samplers(setup) if cfg.remember_feedback else []
        samplers_s = time.perf_counter() - start
        self.bank: list[MembershipAttack] = self._build_bank(pool, task.val, seed, setup) if cfg.forget_feedback else []
        setup.set_postfix_str(f"samplers prepared in {samplers_s:.1f} s, MI bank fit in {time.perf_counter() - start - samplers_s:.1f} s")
        setup.close()
        self.combiner: Optional[uk.GradientCombiner] = None
        if cfg.remember_feedback and cfg.forget_feedback:
            self.combiner = uk.get_combiner(cfg.combiner, cfg.combiner_config)
            self.combiner.reset()
        self.optimizer = torch.optim.SGD(
            self.params.values(), lr=self.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    # -- set-up: sampler caches and the MI bank, built once ---------------------------------
    def _build_samplers(self, setup: Any) -> list[Sampler]:
        original = copy.deepcopy(self.model).requires_grad_(False).eval()  # frozen f_θ0 for φ and v(y)
        samplers = []
        for name in self.config.samplers:
            setup.set_postfix_str(f"preparing sampler {name}")
            sampler = uk.get_sampler(name, self.config.sampler_configs.get(name))
            sampler.prepare(self.pool_x, self.pool_y, original)
            samplers.append(sampler)
            setup.update(1)
        return samplers

    def _build_bank(self, pool: Any, val: Any, seed: int, setup: Any) -> list[MembershipAttack]:
        """The differentiable MI models, fit on the original model: D̂_r members vs D_val non-members."""
        member_logits, non_member_logits = self._bank_logits(pool, val, seed)
        members, non_members = (member_logits, pool.y), (non_member_logits, val.y)
        if self.config.bank_balance:  # equal class sizes, for attacks that do not weight the classes themselves
            n = min(len(members[1]), len(non_members[1]))
            g = stream(seed, "bank-fit")
            members = _take(members, torch.randperm(len(members[1]), generator=g)[:n])
            non_members = _take(non_members, torch.randperm(len(non_members[1]), generator=g)[:n])
        members = tuple(t.to(self.device) for t in members)
        non_members = tuple(t.to(self.device) for t in non_members)
        bank = []
        for name in self.config.bank:
            setup.set_postfix_str(f"fitting MI model {name}")
            attack = uk.get_attack(name, self.config.bank_configs.get(name))
            if not getattr(attack, "differentiable", False):
                raise UsageError(
                    f"ltu: bank attack {name!r} is not differentiable (differentiable = False); "
                    "the MI bank needs attacks whose predict_proba has gradients w.r.t. the logits"
                )
            bank.append(attack.fit(members, non_members))
            setup.update(1)
        return bank

    def _bank_logits(self, pool: Any, val: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The original's logits on D̂_r and D_val, as the forgetting feedback computes the audit set's:
        with batch statistics on a BatchNorm model, in shuffled batches of the audit set's size that
        mix both sets (a bank fit on running-statistics logits reads batch-statistics ones out of its
        range: log-odds of 1e4 on a ResNet-18, docs/ltu.md "Decisions"); otherwise in eval mode."""
        if not self.support_context:
            return uk.predict_logits(self.model, pool, device=self.device), uk.predict_logits(self.model, val, device=self.device)
        x = torch.cat([pool.x, val.x])
        order = torch.randperm(len(x), generator=stream(seed, "bank-batches"))
        logits = torch.empty(len(x), self.num_classes)
        with torch.no_grad():  # near-equal batches of about 2 × audit_size, none of a single sample
            for batch in order.tensor_split(max(1, len(x) // (2 * self.audit_size))):
                logits[batch] = self.forward(self.params, x[batch].to(self.device)).float().cpu()
        return logits[: len(pool.x)], logits[len(pool.x):]

    # -- one iteration ------------------------------------------------------------------------
    def remembering_feedback(self, forget_x: torch.Tensor, forget_y: torch.Tensor) -> meta.Feedback:
        """g_r from the support B_f with random labels and one query set per sampler from D̂_r."""
        cfg = self.config
        random_labels = torch.randint(self.num_classes, (len(forget_y),), generator=self.label_generator)  # eq. 6
        positions = [
            s.sample(forget_x, forget_y, cfg.query_size, self.sampler_generator).to(self.device) for s in self.samplers
        ]  # eq. 7-10
        queries = torch.cat(positions)
        return meta.remembering_feedback(
            self.forward, self.params, forget_x, random_labels.to(self.device),
            self.pool_x[queries], self.pool_y[queries], [len(p) for p in positions],
            inner_lr=self.inner_lr, beta=cfg.beta, first_order=cfg.first_order, meta_opt=cfg.meta_opt, polyak=cfg.polyak, curvature=self.curvature,
            support_context=self.support_context, **self._sharding(len(queries)),
        )

    def forgetting_feedback(self, forget_x: torch.Tensor, forget_y: torch.Tensor) -> meta.Feedback:
        """g_f on the audit set B_f (non-members) ∪ B_r (members) with two different MI models."""
        cfg = self.config
        forget_x, forget_y = forget_x[: self.audit_size], forget_y[: self.audit_size]
        retain = self.retain_batches.next().to(self.device)
        audit_x = torch.cat([forget_x, self.pool_x[retain]])
        audit_y = torch.cat([forget_y, self.pool_y[retain]])
        targets = torch.cat([torch.zeros(len(forget_y)), torch.ones(len(retain))]).to(self.device)
        k = len(self.bank)
        s = int(torch.randint(k, (1,), generator=self.bank_generator))
        q = int(torch.randint(k - 1, (1,), generator=self.bank_generator))
        q += q >= s  # a different model
        return meta.forgetting_feedback(
            self.forward, self.params, audit_x, audit_y, targets,
            log_odds(self.bank[s]), log_odds(self.bank[q]),
            inner_lr=self.inner_lr, beta=cfg.beta, first_order=cfg.first_order, meta_opt=cfg.meta_opt, polyak=cfg.polyak, curvature=self.curvature,
            **self._sharding(len(targets)),
        )

    def _sharding(self, n: int) -> dict[str, Any]:
        """Under torchrun: this rank's part of a meta-test set of `n` samples, and the gradient sum."""
        if distributed.world_size() == 1:
            return {}
        return {"test_part": distributed.shard(torch.arange(n, device=self.device)), "reduce": distributed.all_reduce_sum_}

    def iteration(self) -> dict[str, float]:
        """One LTU iteration: both feedbacks, harmonisation (eq. 12), the meta-update (eq. 5).

        Returns the iteration's losses (`remember_tune`, `remember_test`, `forget_tune`,
        `forget_test`, those computed) and `step_scale` (α_t / α, by which η was scaled); raises
        `DivergenceError` before updating if a loss or the update's gradient is not finite.
        """
        forget = self.forget_batches.next().to(self.device)
        forget_x, forget_y = self.forget_x[forget], self.forget_y[forget]
        losses: dict[str, torch.Tensor] = {}
        feedbacks: list[meta.Feedback] = []
        g_remember = g_forget = None
        if self.config.remember_feedback:
            remember = self.remembering_feedback(forget_x, forget_y)
            losses.update(remember_tune=remember.tune_loss, remember_test=remember.test_loss)
            g_remember = remember.gradient
            feedbacks.append(remember)
        if self.config.forget_feedback:
            forgetting = self.forgetting_feedback(forget_x, forget_y)
            losses.update(forget_tune=forgetting.tune_loss, forget_test=forgetting.test_loss)
            g_forget = forgetting.gradient
            feedbacks.append(forgetting)
        (g_remember, scaled_r), (g_forget, scaled_f) = self._bound(g_remember), self._bound(g_forget)
        self.clipped += scaled_r or scaled_f
        if self.combiner is not None:
            gradient = self.combiner.combine(g_remember, g_forget)  # eq. 12
        else:
            gradient = g_remember if g_remember is not None else g_forget
        squared = sum(g.pow(2).sum() for g in gradient)
        values = torch.stack([*losses.values(), squared]).tolist()  # one device sync per iteration
        self._check_finite(dict(zip([*losses, "gradient"], values)))
        scale = feedbacks[0].step / self.inner_lr  # the remembering step's when there is one
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * scale  # η_t = η α_t / α
        self.scales.append(scale)
        meta.meta_update(self.optimizer, self.params, gradient)
        self.step += 1
        return {**dict(zip(losses, values)), "step_scale": scale}

    def _check_finite(self, values: dict[str, float]) -> None:
        """`DivergenceError` naming the first non-finite value, the iteration and the setting to lower."""
        bad = next((name for name, v in values.items() if not math.isfinite(v)), None)
        if bad is None:
            return
        cfg, where = self.config, f"{WHO}: {DIVERGED[bad]} became {values[bad]} at iteration {self.step + 1}"
        if self.step == 0 and bad.endswith("_tune"):
            raise uk.DivergenceError(f"{where}, before any update: the model's own outputs are not finite")
        setting = "inner_lr" if bad != "gradient" and bad.endswith("_test") else "lr"
        raise uk.DivergenceError(
            f"{where}; lower {setting} (now {getattr(self, setting):g})"
            + ("" if cfg.polyak else ", or set polyak = true (step sizes that follow the loss's scale)")
        )

    def _bound(self, gradient: Optional[list[torch.Tensor]]) -> tuple[Optional[list[torch.Tensor]], bool]:
        """`max_grad_norm` (beyond the paper; off by default) applied to one feedback gradient."""
        if gradient is None:
            return None, False
        return meta.clip_norm(gradient, self.config.max_grad_norm)

    def finish(self) -> nn.Module:
        """The unlearned model, in eval mode, without gradients; with batch statistics on a BatchNorm
        model, its running statistics recomputed over D̂_r under the final weights (never over D_f)."""
        for p in self.params.values():
            p.grad = None
        if self.support_context:
            retain = uk.ArrayDataset(self.pool_x, self.pool_y)
            return uk.recompute_batch_norm(self.model, retain, self.recipe_batch, generator=self.norm_generator, device=self.device)
        return self.model.eval()


def _check_sizes(n_forget: int, n_pool: int, n_val: Optional[int]) -> None:
    """The minimums of one LTU iteration: a forget sample (B_f), a retained one (the query sets
    and B_r) and, for the MI bank, a non-member (`n_val`, None without forgetting feedback)."""
    if n_forget < 1:
        raise UsageError(f"{WHO}: the forget set is empty; {_at_least_one(n_forget)}: there is nothing to unlearn")
    if n_pool < 1:
        raise UsageError(
            f"{WHO}: D̂_r, the retained data LTU may read, is empty; {_at_least_one(n_pool)}: raise the task's retain_access (γ)"
        )
    if n_val is not None and n_val < 1:
        raise UsageError(
            f"{WHO}: the MI bank needs non-members and D_val is empty; {_at_least_one(n_val)}: "
            "give the task a validation split or set forget_feedback = false"
        )


def _at_least_one(n: int) -> str:
    return f"LTU needs at least 1 sample, got {n}"


def log_odds(attack: MembershipAttack) -> meta.MembershipModel:
    """(logits, labels) -> log-odds of membership: the attack's `membership_logit` where it has one,
    else logit(predict_proba) with P clamped to [1e-6, 1 − 1e-6]."""
    direct = getattr(attack, "membership_logit", None)
    if callable(direct):
        return direct
    return lambda logits, labels: torch.logit(attack.predict_proba(logits, labels), eps=LOGIT_EPS)


class LtuUnlearner(uk.Unlearner):
    """Learning to Unlearn: meta-optimised remembering and forgetting feedback, harmonised.

    Reads D_f, D̂_r (`retain`, γ·|D_r| samples; γ is the task's `retain_access`) and D_val
    (non-members for the MI bank). See `LtuConfig` for the settings and ablations.
    """

    reads = frozenset({"forget", "retain", "val"})
    default_retain_access = 0.3  # the paper's γ: LTU reads 30% of D_r
    ablations: ClassVar[dict[str, dict[str, Any]]] = {  # the paper's Tables 3-4, named as there
        "w/o ForFeed": ABLATIONS["wo-forfeed"],
        "w/o RemFeed": ABLATIONS["wo-remfeed"],
        "w/o MetaOpt": ABLATIONS["wo-metaopt"],
        "w/ GradAdd": ABLATIONS["gradadd"],
        "w/ iterative Grad": ABLATIONS["iterative"],
        "first-order": ABLATIONS["first-order"],
    }
    config: LtuConfig
    #: The contract suite runs LTU about ten times on a 400-sample task; a few iterations and
    #: shorter bank fits check the same code paths at a fraction of the cost.
    contract_config: ClassVar[dict[str, Any]] = {
        "iterations": 3,
        "bank_configs": {"mi-logreg": {"steps": 30}, "mi-mlp-sorted": {"steps": 30}, "mi-mlp-label": {"steps": 30}},
    }

    def __init__(self, config: LtuConfig | None = None):
        super().__init__(config or LtuConfig())

    def prepare(self, model: nn.Module, task: Any, *, seed: int = 0, device: torch.device | str | None = None,
                progress: bool = False) -> LtuRun:
        """A run ready to iterate on `model` (modified in place by its iterations); `progress` shows the set-up."""
        return LtuRun(self.config, model, task, seed=seed, device=uk.resolve_device(device, model), progress=progress)

    def run(self, model: nn.Module, task: Any, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        run = self.prepare(model, task, seed=seed, device=device, progress=progress)
        total = iterations_for(self.config, task)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        for step in uk.progress_bar(range(1, total + 1), desc=WHO, unit="iteration", enabled=progress):
            run.iteration()
            if monitor.check(model, step):
                break
        self.run_info["resolved"] = {"lr": run.lr, "inner_lr": run.inner_lr}
        self.run_info["clipped"] = run.clipped
        self.run_info["step_scale"] = min(run.scales, default=1.0)  # the smallest α_t / α of the run
        monitor.finish(model)  # a stop rule's chosen state is loaded into `model`, then finished
        return run.finish()

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """η, the weight decay, the forget batch, β, the inner α, the query and audit sizes, and the
        length `budget` within the cap. `budget` buys budget · R / c iterations of R Retrain steps
        (`iterations_for`), each c = `iteration_cost` steps on phases of about
        (b_f + Σ n_q + 2 n_a) / 3 samples, so it costs budget · phase / B of Retrain."""
        batch = space.batch_size(trial, "forget_batch_size")
        query, audit = space.int(trial, "query_size", 8, 64, log=True), space.int(trial, "audit_size", 8, 64, log=True)
        phase = (batch + len(space.default.samplers) * query + 2 * min(audit, batch)) / 3
        return {
            "lr": space.lr(trial), "weight_decay": space.weight_decay(trial), "forget_batch_size": batch,
            "beta": space.float(trial, "beta", 0.1, 10.0, log=True), "inner_lr": space.float(trial, "inner_lr", 1e-3, 0.5, log=True),
            "query_size": query, "audit_size": audit, "budget": space.share(trial, "budget", 0.02, lambda c: phase / c.batch_size),
        }


def _take(pair: Sequence[torch.Tensor], positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t[positions] for t in pair)
