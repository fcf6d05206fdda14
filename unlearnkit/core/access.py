"""What a component may read: the task parts a method declares, the model populations an audit
declares, and the read-only views that hand over only those."""

from __future__ import annotations

from typing import Any, Iterable

from unlearnkit.core.errors import DataAccessError, UsageError

#: The parts of a task a method may declare in `Unlearner.reads`.
TASK_PARTS = ("forget", "retain", "retain_full", "train", "val")
#: The model populations an audit may declare in `Audit.reads` (see `unlearnkit.data.populations`).
AUDIT_POPULATIONS = ("repeated", "shadow")
#: What every method may read of an `UnlearningTask` besides its parts.
_METADATA = frozenset({"dataset", "dataset_config", "seed", "forget_spec", "retain_access", "num_classes", "input_shape", "recipe",
                       "augment", "describe", "data_record", "class_names", "fingerprint", "val_from"})


class TaskView:
    """The task as a method sees it: declared parts and metadata only. `accessed` records reads."""

    def __init__(self, task: Any, reads: frozenset[str], who: str):
        unknown = set(reads) - set(TASK_PARTS)
        if unknown:
            raise UsageError(f"{who} declares unknown task parts {sorted(unknown)}; expected a subset of {TASK_PARTS}")
        object.__setattr__(self, "_task", task)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "who", who)
        object.__setattr__(self, "accessed", set())

    def __getattr__(self, name: str) -> Any:
        if name in TASK_PARTS or name == "test":
            if name not in self.reads:
                raise DataAccessError(
                    f"{self.who} read task.{name} but declares reads={sorted(self.reads)}; "
                    f"add {name!r} to its `reads` if it really needs it"
                )
            self.accessed.add(name)
            return getattr(self._task, name)
        if name in _METADATA:
            return getattr(self._task, name)
        raise AttributeError(f"task view has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a task view is read-only")


class PopulationView:
    """The populations an audit declared in `reads`; reading another raises `DataAccessError`."""

    def __init__(self, populations: dict[str, Any], reads: Iterable[str], who: str):
        reads = frozenset(reads)
        unknown = reads - set(AUDIT_POPULATIONS)
        if unknown:
            raise UsageError(f"{who} declares unknown populations {sorted(unknown)}; expected a subset of {AUDIT_POPULATIONS}")
        object.__setattr__(self, "_populations", dict(populations))
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "who", who)

    def __getattr__(self, name: str) -> Any:
        if name not in AUDIT_POPULATIONS:
            raise AttributeError(f"population view has no attribute {name!r}")
        if name not in self.reads:
            raise DataAccessError(f"{self.who} read the {name!r} population but declares reads={sorted(self.reads)}")
        if name not in self._populations:
            raise AttributeError(f"the {name!r} population was not built")
        return self._populations[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a population view is read-only")
