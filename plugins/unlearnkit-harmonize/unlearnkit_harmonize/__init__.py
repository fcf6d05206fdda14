"""Gradient combiners for unlearnkit: `harmonize` (LTU eq. 12), `sum`, `pcgrad`, `alternate`.

    import unlearnkit as uk
    g = uk.get_combiner("harmonize").combine(g_remember, g_forget)
"""

from __future__ import annotations

from unlearnkit_harmonize.combiners import (
    Alternate,
    AlternateConfig,
    Harmonize,
    HarmonizeConfig,
    PCGrad,
    PCGradConfig,
    SumCombiner,
    SumConfig,
)
from unlearnkit_harmonize.vector import Dots, dots

__version__ = "0.1.0"

__all__ = [
    "Alternate", "AlternateConfig", "Dots", "Harmonize", "HarmonizeConfig", "PCGrad", "PCGradConfig",
    "SumCombiner", "SumConfig", "dots",
]
