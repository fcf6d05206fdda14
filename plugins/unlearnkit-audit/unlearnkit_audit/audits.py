"""The two audits as registered components: `epsilon` and `ulira`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

import unlearnkit as uk
from unlearnkit import PopulationView

from unlearnkit_audit.confidence import logit_scaled_confidence
from unlearnkit_audit.epsilon import bucket_points, example_epsilons, final_score
from unlearnkit_audit.ulira import MIN_PER_SIDE, attack_summary, example_accuracy, likelihood_ratios


@uk.config_class
class EpsilonConfig:
    """The score has no settings: δ = 1e-5, the cap of 50 and the rule grids are the reference's."""


@uk.config_class
class UliraConfig:
    """U-LiRA has no settings: Gaussians per example, leave-one-model-out, threshold 0."""


class EpsilonAudit(uk.Audit):
    """The NeurIPS 2023 challenge's forgetting quality F and final score on the `repeated` population."""

    reads: ClassVar[frozenset[str]] = frozenset({"repeated"})
    min_models: ClassVar[int] = 2
    headline: ClassVar[tuple[str, ...]] = ("F", "final")

    def run(self, populations: PopulationView) -> uk.AuditResult:
        pop = populations.repeated
        unlearned = logit_scaled_confidence(pop.unlearned_logits, pop.labels)
        retrained = logit_scaled_confidence(pop.retrained_logits, pop.labels)
        eps = example_epsilons(unlearned, retrained)
        quality = float(bucket_points(eps, unlearned.shape[0]).mean())
        summary = {
            "F": quality,
            "final": final_score(quality, pop.unlearned_accuracy, pop.retrained_accuracy),
            "median_epsilon": float(np.median(eps)),
            "RA_u": float(pop.unlearned_accuracy["RA"]), "RA_r": float(pop.retrained_accuracy["RA"]),
            "TA_u": float(pop.unlearned_accuracy["TA"]), "TA_r": float(pop.retrained_accuracy["TA"]),
        }
        return uk.AuditResult(summary=summary, per_example={"epsilon": eps})


class UliraAudit(uk.Audit):
    """U-LiRA's per-example likelihood-ratio attack on the `shadow` population."""

    reads: ClassVar[frozenset[str]] = frozenset({"shadow"})
    min_models: ClassVar[int] = 2 * MIN_PER_SIDE
    headline: ClassVar[tuple[str, ...]] = ("accuracy", "AUC", "TPR@1%FPR", "TPR@0.1%FPR")

    def run(self, populations: PopulationView) -> uk.AuditResult:
        pop = populations.shadow
        confs = logit_scaled_confidence(pop.logits, pop.labels)
        scores = likelihood_ratios(confs, pop.forgot)
        return uk.AuditResult(summary=attack_summary(scores, pop.forgot),
                              per_example={"ulira_accuracy": example_accuracy(scores, pop.forgot)})
