"""LTU (Learning to Unlearn, Huang et al., ECCV 2024) as an unlearnkit plugin: the `ltu` unlearner.

    import unlearnkit as uk
    new = uk.get_unlearner("ltu", iterations=90).unlearn(model, task)
"""

from __future__ import annotations

from unlearnkit_ltu.config import ABLATIONS, LtuConfig
from unlearnkit_ltu.meta import (
    Feedback,
    forgetting_feedback,
    functional_forward,
    meta_test,
    meta_tune,
    meta_update,
    remembering_feedback,
)
from unlearnkit_ltu.unlearner import LtuRun, LtuUnlearner

__version__ = "0.1.0"

__all__ = [
    "ABLATIONS", "Feedback", "LtuConfig", "LtuRun", "LtuUnlearner", "forgetting_feedback", "functional_forward",
    "meta_test", "meta_tune", "meta_update", "remembering_feedback",
]
