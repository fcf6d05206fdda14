"""Registers the attacks of unlearnkit-attacks with unlearnkit."""

from __future__ import annotations

from unlearnkit import Register, hookimpl

from unlearnkit_attacks.neural import MiLogReg, MiLogRegConfig, MiMlpConfig, MiMlpLabel, MiMlpSorted
from unlearnkit_attacks.svc import SVC_FEATURES, SvcAttack, SvcConfig
from unlearnkit_attacks.threshold import LossThresholdAttack, LossThresholdConfig


def _svc(feature: str):
    def factory(config: SvcConfig) -> SvcAttack:
        return SvcAttack(config, feature)

    return factory


@hookimpl
def unlearnkit_register_attacks(register: Register) -> None:
    for feature in SVC_FEATURES:  # svc-confidence (SalUn's MIA-efficacy), svc-entropy, ...
        register(f"svc-{feature}", _svc(feature), SvcConfig)
    register("loss-threshold", LossThresholdAttack, LossThresholdConfig)
    register("mi-logreg", MiLogReg, MiLogRegConfig)
    register("mi-mlp-sorted", MiMlpSorted, MiMlpConfig)
    register("mi-mlp-label", MiMlpLabel, MiMlpConfig)
