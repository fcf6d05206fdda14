"""Membership-inference attacks for unlearnkit: SalUn's SVC attacks for evaluation, a loss
threshold, and differentiable MI models for LTU's forgetting-feedback bank."""

from __future__ import annotations

from unlearnkit_attacks.neural import MiLogReg, MiMlpLabel, MiMlpSorted, NeuralMIAttack
from unlearnkit_attacks.svc import SvcAttack
from unlearnkit_attacks.threshold import LossThresholdAttack

__version__ = "0.1.0"
__all__ = ["LossThresholdAttack", "MiLogReg", "MiMlpLabel", "MiMlpSorted", "NeuralMIAttack", "SvcAttack"]
