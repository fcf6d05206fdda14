"""The populations audits read: the shadow halves, a shadow model's task, the read-only view."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.core.errors import DataAccessError, UsageError
from unlearnkit.data.populations import PopulationView, ShadowPopulation, positions_in_train, shadow_halves, shadow_task
from unlearnkit.testing import tiny_task


def test_shadow_models_pair_up_on_complementary_halves():
    task = tiny_task(forget="random:0.1")
    member = shadow_halves(task, 6)
    forget, retain = positions_in_train(task, "forget"), positions_in_train(task, "retain_full")
    assert np.all(member[0::2] ^ member[1::2])  # each sample in exactly one model of each pair
    assert np.all(member[:, forget].sum(0) == 3)  # forgotten by N / 2 models, never seen by the others
    for row in member:
        assert abs(row[forget].sum() - len(forget) / 2) <= 0.5 and abs(row[retain].sum() - len(retain) / 2) <= 0.5
    assert np.array_equal(member, shadow_halves(task, 6)) and not np.array_equal(member, shadow_halves(tiny_task(seed=1), 6))
    with pytest.raises(UsageError, match="even number of models, got 5"):
        shadow_halves(task, 5)


def test_a_shadow_task_holds_the_half_and_its_share_of_the_forget_set():
    task = tiny_task(forget="random:0.1")
    member = shadow_halves(task, 2)[0]
    half = shadow_task(task, member, 0.5, seed=3)
    train = set(task.train.indices[member].tolist())
    assert set(half.train.indices.tolist()) == train
    assert set(half.forget.indices.tolist()) == train & set(task.forget.indices.tolist())
    assert set(half.retain_full.indices.tolist()) == train - set(task.forget.indices.tolist())
    assert len(half.retain) == round(0.5 * len(half.retain_full)) and set(half.retain.indices.tolist()) <= set(half.retain_full.indices.tolist())
    assert half.test is task.test and half.val is task.val


def test_the_view_hands_out_only_declared_populations_read_only():
    shadow = ShadowPopulation(logits=np.zeros((2, 3, 4)), labels=np.zeros(3, int), forgot=np.zeros((2, 3), bool))
    view = PopulationView({"shadow": shadow}, {"shadow"}, who="audit 'x'")
    assert view.shadow is shadow and not shadow.logits.flags.writeable
    with pytest.raises(DataAccessError, match="audit 'x' read the 'repeated' population but declares reads=\\['shadow'\\]"):
        PopulationView({"shadow": shadow}, {"shadow"}, who="audit 'x'").repeated
    with pytest.raises(AttributeError, match="was not built"):
        PopulationView({}, {"repeated"}, who="audit 'x'").repeated
    with pytest.raises(UsageError, match="unknown populations \\['models'\\]"):
        PopulationView({}, {"models"}, who="audit 'x'")

