"""The unlearning baselines of the LTU paper, and four later ones, as unlearnkit plugins.

    import unlearnkit as uk
    new = uk.get_unlearner("salun", sparsity=0.5).unlearn(model, task, seed=0)
"""

from __future__ import annotations

from unlearnkit_baselines.badteacher import BadTConfig, BadTeacher
from unlearnkit_baselines.finetune import FineTune, FTConfig, GAConfig, GradientAscent
from unlearnkit_baselines.fisher import FisherConfig, FisherForgetting
from unlearnkit_baselines.neggrad import NegGradPlus, NegGradPlusConfig
from unlearnkit_baselines.relabel import Amnesiac, AmnesiacConfig, RandLConfig, RandomLabel
from unlearnkit_baselines.retrain import Retrain, RetrainConfig
from unlearnkit_baselines.salun import SalUn, SalUnConfig
from unlearnkit_baselines.scrub import Scrub, ScrubConfig
from unlearnkit_baselines.sfron import SFRon, SFRonConfig
from unlearnkit_baselines.sparse import L1Sparse, L1SparseConfig
from unlearnkit_baselines.ssd import SelectiveSynapticDampening, SSDConfig

__version__ = "0.1.0"

__all__ = [
    "Amnesiac", "AmnesiacConfig", "BadTConfig", "BadTeacher", "FTConfig", "FineTune", "FisherConfig",
    "FisherForgetting", "GAConfig", "GradientAscent", "L1Sparse", "L1SparseConfig", "NegGradPlus",
    "NegGradPlusConfig", "RandLConfig", "RandomLabel", "Retrain", "RetrainConfig", "SFRon", "SFRonConfig",
    "SSDConfig", "SalUn", "SalUnConfig", "Scrub", "ScrubConfig", "SelectiveSynapticDampening",
]
