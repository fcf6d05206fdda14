"""Registers the baselines with unlearnkit (entry point `baselines`)."""

from __future__ import annotations

from unlearnkit import Register, hookimpl

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

#: name -> (unlearner class, config class): the LTU paper's Table 1 in its order, then the later baselines.
BASELINES = {
    "retrain": (Retrain, RetrainConfig),
    "ft": (FineTune, FTConfig),
    "randl": (RandomLabel, RandLConfig),
    "ga": (GradientAscent, GAConfig),
    "amnesiac": (Amnesiac, AmnesiacConfig),
    "fisher": (FisherForgetting, FisherConfig),
    "ssd": (SelectiveSynapticDampening, SSDConfig),
    "badt": (BadTeacher, BadTConfig),
    "salun": (SalUn, SalUnConfig),
    "neggrad-plus": (NegGradPlus, NegGradPlusConfig),
    "scrub": (Scrub, ScrubConfig),
    "l1-sparse": (L1Sparse, L1SparseConfig),
    "sfron": (SFRon, SFRonConfig),
}


@hookimpl
def unlearnkit_register_unlearners(register: Register) -> None:
    for name, (cls, config_cls) in BASELINES.items():
        register(name, cls, config_cls)
