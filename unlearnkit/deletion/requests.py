"""Deletion requests in a row: the forget set a checkpoint records, and the task of a checkpoint
extended by a new request.

A checkpoint made by `unlearn` records its forget set as the sorted indices of the forgotten
samples in the dataset's train split (`meta["forget_set"]`), never their ids, and one entry per
request (`meta["requests"]`: count and SHA-256 of the ids). Unlearning such a checkpoint again
forgets the union: every metric and the Retrain reference are then about all requests so far.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from unlearnkit.core.errors import CheckpointError, UsageError
from unlearnkit.data.datasets import DatasetBundle
from unlearnkit.data.tasks import ForgetSpec, UnlearningTask, ids_digest, load_bundle, make_task, parse_forget


def recorded_forget(meta: dict[str, Any], **task_options: Any) -> Optional[tuple[int, ...]]:
    """The indices a checkpoint has forgotten, or None for one that has forgotten nothing.

    Checkpoints from before forget sets were recorded name their spec only; it is resolved again.
    """
    if meta.get("forget_set") is not None:
        return tuple(meta["forget_set"]["indices"])
    spec = (meta.get("unlearned") or {}).get("forget")
    if not spec:
        return None
    return tuple(make_task(meta["dataset"], forget=spec, **task_options).forget.indices.tolist())


def forget_label(meta: dict[str, Any]) -> Optional[str]:
    """How the checkpoint's forget set was asked for: its request specs joined by ' + '."""
    requests = meta.get("requests") or []
    if requests:
        return " + ".join(r["forget"] for r in requests)
    return (meta.get("unlearned") or {}).get("forget")


def checkpoint_task(meta: dict[str, Any], forget: Optional[str], *, extend: bool, retain_access: float = 1.0,
                    data_dir: Optional[str] = None, download: bool = False, progress: bool = False) -> UnlearningTask:
    """The task the checkpoint was made on, with its recorded forget set.

    `extend` (unlearn): `forget` is a new request, added to what the checkpoint has forgotten;
    `task.request` is that request. Otherwise (evaluate) `forget` may only repeat the recorded one.
    A dataset read from files must still have the content the checkpoint recorded.
    """
    options = {"retain_access": retain_access, "seed": int(meta.get("seed", 0)), "val_ratio": float(meta.get("val_ratio", 0.1)),
               "val_from": meta.get("val_from", "train"), "data_dir": data_dir, "download": download,
               "dataset_config": meta.get("dataset_config") or None, "progress": progress}
    bundle, _ = load_bundle(meta["dataset"], options["dataset_config"], data_dir, download, progress)
    _check_data(meta, bundle)
    recorded = recorded_forget(meta, **options)
    label = forget_label(meta)
    if recorded is not None and not extend and forget and str(parse_forget(forget)) != label:
        raise CheckpointError(f"checkpoint forgot {label!r}; evaluating it against --forget {forget!r} would mix tasks")
    if recorded is None and not forget:
        raise UsageError("--forget is required: random:RATIO, class:K, indices:FILE or ids:FILE")
    if extend or recorded is None:
        task = make_task(meta["dataset"], forget=forget, **options)
        if recorded is None:
            return task
        asked = set(task.forget.indices.tolist())
        union = tuple(sorted(set(recorded) | asked))
        if len(union) == len(recorded):
            raise UsageError(f"forget spec {parse_forget(forget)}: every sample it names is already forgotten by this checkpoint")
        request = attrs.evolve(task.request, already_forgotten=len(asked & set(recorded)))
    else:
        union, request = recorded, None
    task = make_task(meta["dataset"], forget=ForgetSpec("indices", union), **options)
    task.request = request
    return task


def _check_data(meta: dict[str, Any], data: DatasetBundle) -> None:
    """The dataset still has the classes, input shape and (when recorded) content of the checkpoint's."""
    if data.num_classes != int(meta["num_classes"]) or list(data.input_shape) != list(meta["input_shape"]):
        raise CheckpointError(
            f"checkpoint expects {meta['num_classes']} classes of shape {meta['input_shape']}, but {meta['dataset']!r} has "
            f"{data.num_classes} of shape {list(data.input_shape)}"
        )
    recorded = meta.get("dataset_fingerprint")
    if recorded and data.fingerprint != recorded:
        raise CheckpointError(
            f"dataset {meta['dataset']!r} has changed since the checkpoint was made (content SHA-256 {str(data.fingerprint)[:12]}..., "
            f"recorded {recorded[:12]}...); unlearning and its report need the data the model was trained on"
        )


def forget_record(meta: dict[str, Any], task: UnlearningTask, request_spec: str, method: str) -> dict[str, Any]:
    """The metadata an unlearned checkpoint adds: its forget set and the list of requests so far."""
    request = task.request
    earlier = meta.get("requests")
    if earlier is None and meta.get("unlearned"):  # a checkpoint from before requests were recorded
        earlier = [{"forget": meta["unlearned"]["forget"], "method": meta["unlearned"]["method"]}]
    entry = {"forget": request_spec, "count": len(request.ids), "sha256": request.digest(), "held_out": request.held_out,
             "new": request.new, "method": method}
    return {
        "forget_set": {"indices": task.forget.indices.tolist(), "count": len(task.forget), "sha256": ids_digest(task.ids_of(task.forget))},
        "requests": [*(earlier or []), entry],
    }
