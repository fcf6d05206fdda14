"""The training recipe: the optimiser and schedule a dataset is trained with."""

from __future__ import annotations

import attrs

from unlearnkit.core.config import config_class
from unlearnkit.core.validators import non_negative, one_of, positive


@config_class
class TrainConfig:
    """SGD with momentum and a learning-rate schedule (`cosine`, `step` at 50%/75%, `constant`)."""

    epochs: int = attrs.field(default=30, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)
    lr: float = attrs.field(default=0.05, validator=positive)
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    schedule: str = attrs.field(default="cosine", validator=one_of("cosine", "step", "constant"))
