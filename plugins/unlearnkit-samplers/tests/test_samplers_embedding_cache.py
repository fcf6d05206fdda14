"""The frozen original's memory of its outputs: what counts as the same row, what it keeps,
when the original counts as the same model, and the pool's single forward pass."""

from __future__ import annotations

import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.testing import trained_tiny_model
from unlearnkit_samplers.embedding import FrozenOriginal, shared_original


class CumulativeSum(nn.Module):
    """Logits that depend on the input's dtype (it is read as float) and on its shape (summed
    along the last dimension), so rows with the same bytes can have different outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.float().cumsum(-1).reshape(len(x), -1))


class Tempered(nn.Module):
    """The tiny MLP with its logits divided by a non-persistent `temperature` buffer."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("temperature", torch.tensor(1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) / self.temperature


def counting_forwards(model: nn.Module) -> list[int]:
    """The batch sizes of the forward passes `model` (and any deep copy of it) runs from now on."""
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    return rows


@torch.no_grad()
def test_rows_with_the_same_bytes_but_another_dtype_or_shape_are_not_answered_from_memory():
    torch.manual_seed(0)
    model = CumulativeSum().eval()
    half = torch.randn(5, 2, 4).half()
    same_bytes = {"fp16": half, "bf16": half.view(torch.bfloat16), "reshaped": half.reshape(5, 4, 2)}
    expected = {name: model(x) for name, x in same_bytes.items()}
    forwards = counting_forwards(model)
    original = FrozenOriginal(model)
    for name, x in same_bytes.items():
        assert torch.equal(original.outputs(x, batch_size=16)[1], expected[name]), name
    for name, x in same_bytes.items():  # asked again, each is answered from memory with its own output
        assert torch.equal(original.outputs(x, batch_size=16)[1], expected[name]), name
    assert forwards == [5, 5, 5]


def test_the_rows_remembered_own_their_memory_and_at_most_max_rows_are_kept():
    """What stays remembered after a batch is `max_rows` rows, not the batch's output tensors."""
    model, task = trained_tiny_model()
    original = FrozenOriginal(model)
    original.max_rows = 4
    features, logits = original.outputs(task.retain.x[:32], batch_size=8)
    kept = [t for pair in original._rows.values() for t in pair]
    assert len(kept) == 2 * original.max_rows
    row_bytes = features[0].nbytes + logits[0].nbytes
    assert sum(t.untyped_storage().nbytes() for t in kept) == original.max_rows * row_bytes


def test_a_model_changed_only_in_a_non_persistent_buffer_or_in_dtype_is_another_original():
    body, task = trained_tiny_model()
    model = Tempered(body).eval()
    x = task.forget.x[:6]
    first = shared_original(model)
    model.temperature.fill_(2.0)  # not in the state_dict, but it changes every logit
    tempered = shared_original(model)
    assert tempered is not first
    with torch.no_grad():
        assert torch.equal(tempered.outputs(x, batch_size=16)[1], model(x))
    model.double()  # every value is exactly representable: equal values, another model
    assert shared_original(model) is not tempered
    assert shared_original(model) is shared_original(model)


def test_two_samplers_on_a_pool_larger_than_the_row_memory_embed_it_once(monkeypatch):
    monkeypatch.setattr(FrozenOriginal, "max_rows", 16)
    model, task = trained_tiny_model()
    assert len(task.retain) > FrozenOriginal.max_rows
    forwards = counting_forwards(model)
    for name in ("feature-nn", "label-nn"):
        uk.get_sampler(name, batch_size=1024).prepare(task.retain.x, task.retain.y, model)
    assert forwards == [len(task.retain)]
