"""`unlearnkit tune`: every method tuned with the same budget and criterion (Optuna).

`space`: the shared axes and the budget a method's `search_space` is declared with; `study`:
the study of one method (objective, pruner, storage, workers); `report`: tuning.json,
tuning.md and the tuned configs; `command`: the command line.
"""

from unlearnkit.tune.space import Cell, SearchSpace

__all__ = ["Cell", "SearchSpace"]
