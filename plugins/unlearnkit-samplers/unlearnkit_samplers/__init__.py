"""LTU's query samplers for unlearnkit: `feature-nn`, `label-nn` and `random`.

    import unlearnkit as uk
    sampler = uk.get_sampler("feature-nn")
    sampler.prepare(task.retain.x, task.retain.y, model)      # once per pool
    positions = sampler.sample(support_x, support_y, k=32, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from unlearnkit_samplers.neighbours import PoolIndex
from unlearnkit_samplers.samplers import FeatureNN, FeatureNNConfig, LabelNN, LabelNNConfig, RandomConfig, RandomSampler

__version__ = "0.1.0"

__all__ = ["FeatureNN", "FeatureNNConfig", "LabelNN", "LabelNNConfig", "PoolIndex", "RandomConfig", "RandomSampler"]
