"""Per-example privacy audits for unlearnkit: the NeurIPS 2023 challenge's forgetting score
(`epsilon`) and U-LiRA (`ulira`), computed over populations of unlearned and retrained models.

The functions below work on plain arrays; the registered audits are in `unlearnkit_audit.audits`.
"""

from __future__ import annotations

from unlearnkit_audit.confidence import logit_scaled_confidence
from unlearnkit_audit.epsilon import bucket_points, example_epsilons, final_score, forget_quality
from unlearnkit_audit.ulira import attack_summary, example_accuracy, likelihood_ratios

__version__ = "0.1.0"
__all__ = [
    "attack_summary", "bucket_points", "example_accuracy", "example_epsilons", "final_score", "forget_quality",
    "likelihood_ratios", "logit_scaled_confidence",
]
