"""What each feedback is computed on: the audit set's targets, the query sets' labels, and the
direction the forgetting feedback moves the MI bank (mutations of these must fail a test)."""

from __future__ import annotations

import torch

import unlearnkit as uk

from unlearnkit_ltu import meta


def _rows_in(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """For each row of `x`, its position in `pool` (-1 when absent)."""
    match = (x.reshape(len(x), 1, -1) == pool.reshape(1, len(pool), -1)).all(-1)
    return torch.where(match.any(1), match.float().argmax(1), torch.full((len(x),), -1))


def test_audit_set_marks_forget_samples_non_members_and_retain_samples_members(doubles, tiny, monkeypatch):
    model, task = tiny
    seen = []
    real = meta.forgetting_feedback

    def spy(forward, params, audit_x, audit_y, targets, *args, **kwargs):
        seen.append((audit_x.clone(), audit_y.clone(), targets.clone()))
        return real(forward, params, audit_x, audit_y, targets, *args, **kwargs)

    monkeypatch.setattr(meta, "forgetting_feedback", spy)
    uk.get_unlearner("ltu", doubles.config(iterations=3, audit_size=5)).unlearn(model, task, seed=0)
    assert len(seen) == 3
    for audit_x, audit_y, targets in seen:
        in_forget = _rows_in(audit_x, task.forget.x) >= 0
        in_retain = _rows_in(audit_x, task.retain.x) >= 0
        assert (in_forget ^ in_retain).all(), "every audit sample comes from D_f or D̂_r"
        assert in_forget.sum() == 5 and in_retain.sum() == 5
        assert (targets[in_forget] == 0).all(), "forget samples are non-members (target 0)"
        assert (targets[in_retain] == 1).all(), "remaining samples are members (target 1)"
        forget_rows = _rows_in(audit_x[in_forget], task.forget.x)
        assert torch.equal(audit_y[in_forget], task.forget.y[forget_rows]), "the MI models read the true labels"


def test_query_sets_carry_the_labels_of_their_pool_samples(doubles, tiny, monkeypatch):
    model, task = tiny
    seen = []
    real = meta.remembering_feedback

    def spy(forward, params, support_x, support_y, query_x, query_y, sizes, **kwargs):
        seen.append((query_x.clone(), query_y.clone()))
        return real(forward, params, support_x, support_y, query_x, query_y, sizes, **kwargs)

    monkeypatch.setattr(meta, "remembering_feedback", spy)
    uk.get_unlearner("ltu", doubles.config(iterations=3)).unlearn(model, task, seed=0)
    assert len(seen) == 3
    for query_x, query_y in seen:
        positions = _rows_in(query_x, task.retain.x)
        assert (positions >= 0).all(), "query samples come from D̂_r only"
        assert len(set(query_y.tolist())) > 1, "a query set mixing classes (so a label shift is visible)"
        assert torch.equal(query_y, task.retain.y[positions])


def test_forgetting_feedback_alone_lowers_the_banks_membership_of_the_forget_set(doubles, tiny):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", doubles.config(
        remember_feedback=False, iterations=10, lr=0.02, momentum=0.0, weight_decay=0.0, curvature=False,  # the direction, not the step rule
    ))
    run = ltu.prepare(model, task, seed=0)

    def membership() -> list[float]:
        with torch.no_grad():
            logits = model(task.forget.x)
            return [float(m.predict_proba(logits, task.forget.y).mean()) for m in run.bank]

    before = membership()
    for _ in range(10):
        run.iteration()
    after = membership()
    # Pushing D_f towards "non-member" moves every bank model's view of it by several points
    # (10 points here); with the targets flipped the same run moves it by less than 0.2.
    assert all(a < b - 0.05 for a, b in zip(after, before)), (before, after)
