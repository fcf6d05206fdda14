"""The contract every `unlearnkit.Unlearner` must pass (see its docstring).

    from unlearnkit.testing.contracts import parametrize_with_checks

    @parametrize_with_checks("unlearner", ["my-method"])
    def test_my_method_contract(name, check):
        check(name)

Each check builds the registered unlearner by name with `get_unlearner(name)` and runs it on
`trained_tiny_model()` (a small MLP trained on a 400-sample, 4-class Gaussian task). Keep a
method's default config cheap enough for that task. If the defaults are too slow for it, the
unlearner class may define a class attribute `contract_config`, a dict of config overrides
the checks then apply (e.g. `contract_config = {"iterations": 4}`); document why next to it.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from unlearnkit.core.access import TASK_PARTS
from unlearnkit.core.errors import DataAccessError
from unlearnkit.core.interfaces import Unlearner
from unlearnkit.core.registry import get_unlearner
from unlearnkit.data.tasks import UnlearningTask
from unlearnkit.testing import trained_tiny_model

__all__ = [
    "CHECKS",
    "check_declares_readable_parts",
    "check_leaves_input_untouched",
    "check_returns_new_model_of_same_architecture",
    "check_same_seed_same_model_on_cpu",
    "check_reads_only_declared_parts",
    "check_finishes_with_finite_outputs",
    "check_runs_on_requested_device",
]

_PARTS = ("train", "val", "test", "forget", "retain_full", "retain")


def _unlearner(name: str) -> Unlearner:
    unlearner = get_unlearner(name)
    overrides = getattr(type(unlearner), "contract_config", None)
    return get_unlearner(name, **overrides) if overrides else unlearner


def _run(name: str, unlearner: Unlearner, model: nn.Module, task: Any, *, seed: int = 0, device: Optional[str] = None) -> nn.Module:
    out = unlearner.unlearn(model, task, seed=seed, device=device)
    assert isinstance(out, nn.Module), f"{name}: unlearn returned {type(out).__name__}, expected a torch.nn.Module"
    return out


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
        "devices": {k: v.device for k, v in model.state_dict().items()},
    }


def _data_snapshot(task: UnlearningTask) -> dict[str, tuple[torch.Tensor, ...]]:
    return {p: tuple(t.clone() for t in (getattr(task, p).x, getattr(task, p).y, getattr(task, p).indices)) for p in _PARTS}


def check_declares_readable_parts(name: str) -> None:
    """`reads` is a non-empty subset of `TASK_PARTS`; the test split is never among them."""
    unlearner = _unlearner(name)
    assert isinstance(unlearner, Unlearner), f"{name}: built {type(unlearner).__name__}, not an unlearnkit.Unlearner"
    reads = unlearner.reads
    assert isinstance(reads, (frozenset, set)), f"{name}: reads is {type(reads).__name__}, expected a frozenset"
    assert reads, f"{name}: reads is empty; declare the task parts the method reads"
    assert "test" not in reads, f"{name}: declares the test split, which no method may read"
    unknown = set(reads) - set(TASK_PARTS)
    assert not unknown, f"{name}: reads declares unknown parts {sorted(unknown)}; expected a subset of {TASK_PARTS}"


def check_leaves_input_untouched(name: str) -> None:
    """The input model keeps its parameters, buffers, `requires_grad`, modes, devices and (no) gradients; the task's data and torch's global RNG are unchanged."""
    model, task = trained_tiny_model()
    for mode in (False, True):
        model.train(mode)
        before, data = _snapshot(model), _data_snapshot(task)
        rng = torch.get_rng_state()
        _run(name, _unlearner(name), model, task)
        after = _snapshot(model)
        changed = [k for k in before["state"] if not torch.equal(before["state"][k], after["state"][k])]
        assert not changed, f"{name}: unlearn modified the input model's {changed}"
        assert before["requires_grad"] == after["requires_grad"], f"{name}: unlearn changed requires_grad on the input model"
        assert before["training"] == after["training"], f"{name}: unlearn changed the input model's train/eval mode (input in {'train' if mode else 'eval'} mode)"
        assert before["devices"] == after["devices"], f"{name}: unlearn moved the input model"
        with_grad = [k for k, p in model.named_parameters() if p.grad is not None]
        assert not with_grad, f"{name}: unlearn left gradients on the input model's {with_grad}"
        touched = [p for p in _PARTS if not all(torch.equal(a, b) for a, b in zip(data[p], _data_snapshot(task)[p]))]
        assert not touched, f"{name}: unlearn modified the task's {touched} data in place"
        assert torch.equal(rng, torch.get_rng_state()), f"{name}: unlearn changed torch's global RNG state"


def check_returns_new_model_of_same_architecture(name: str) -> None:
    """A different object of the same class, with the same state_dict keys, shapes and dtypes, sharing no storage with the input, in eval mode."""
    model, task = trained_tiny_model()
    out = _run(name, _unlearner(name), model, task)
    assert out is not model, f"{name}: returned the input model itself"
    assert type(out) is type(model), f"{name}: returned a {type(out).__name__}, the input is a {type(model).__name__}"
    a, b = model.state_dict(), out.state_dict()
    assert a.keys() == b.keys(), f"{name}: state_dict keys differ: missing {sorted(a.keys() - b.keys())}, extra {sorted(b.keys() - a.keys())}"
    for k in a:
        assert a[k].shape == b[k].shape, f"{name}: {k} has shape {tuple(b[k].shape)}, the input's is {tuple(a[k].shape)}"
        assert a[k].dtype == b[k].dtype, f"{name}: {k} has dtype {b[k].dtype}, the input's is {a[k].dtype}"
    shared = [k for k in a if a[k].numel() and a[k].untyped_storage().data_ptr() == b[k].untyped_storage().data_ptr()]
    assert not shared, f"{name}: the output shares storage with the input model for {shared}"
    assert not out.training, f"{name}: the returned model is in train mode; return model.eval()"


def check_same_seed_same_model_on_cpu(name: str) -> None:
    """Two runs with the same config, seed and data on CPU give bit-identical models."""
    model, task = trained_tiny_model()
    first = _run(name, _unlearner(name), model, task, seed=3, device="cpu")
    second = _run(name, _unlearner(name), model, task, seed=3, device="cpu")
    differ = [k for k, v in first.state_dict().items() if not torch.equal(v, second.state_dict()[k])]
    assert not differ, f"{name}: two runs with seed 3 differ in {differ}"


def check_reads_only_declared_parts(name: str) -> None:
    """Run on a view of the task limited to `reads`, it finishes and touches nothing else."""
    model, task = trained_tiny_model()
    unlearner = _unlearner(name)
    view = task.view(unlearner.reads, who=name)
    try:
        _run(name, unlearner, model, view)
    except DataAccessError as exc:
        raise AssertionError(f"{name}: read beyond its declared reads {sorted(unlearner.reads)}: {exc}") from exc
    extra = set(view.accessed) - set(unlearner.reads)
    assert not extra, f"{name}: read {sorted(extra)} beyond its declared reads {sorted(unlearner.reads)}"


def check_finishes_with_finite_outputs(name: str) -> None:
    """On the tiny task, every parameter and buffer of the result, and its logits on every split, are finite."""
    model, task = trained_tiny_model()
    out = _run(name, _unlearner(name), model, task)
    bad = [k for k, v in out.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"{name}: non-finite values in {bad}"
    with torch.no_grad():
        for part in ("forget", "retain_full", "test"):
            logits = out(getattr(task, part).x)
            assert torch.isfinite(logits).all(), f"{name}: non-finite logits on the {part} split"


def check_runs_on_requested_device(name: str) -> None:
    """`device="cpu"` gives a model on the CPU; where CUDA is available, `device="cuda"` gives one on the GPU from a CPU model left on the CPU."""
    model, task = trained_tiny_model()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        out = _run(name, _unlearner(name), model, task, device=device)
        where = {t.device.type for t in out.state_dict().values()}
        assert where == {device}, f"{name}: asked for {device}, the result lives on {sorted(where)}"
        assert {t.device.type for t in model.state_dict().values()} == {"cpu"}, f"{name}: moved the input model off the CPU"
        with torch.no_grad():
            logits = out(task.forget.x.to(device))
        assert torch.isfinite(logits).all(), f"{name}: non-finite logits on {device}"


CHECKS = [
    check_declares_readable_parts,
    check_leaves_input_untouched,
    check_returns_new_model_of_same_architecture,
    check_same_seed_same_model_on_cpu,
    check_reads_only_declared_parts,
    check_finishes_with_finite_outputs,
    check_runs_on_requested_device,
]
