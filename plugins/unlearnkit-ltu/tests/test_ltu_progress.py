"""LTU's progress covers all of its time: the set-up (sampler caches, MI bank fits) and the iterations."""

from __future__ import annotations

import re

import unlearnkit as uk
from unlearnkit_ltu.unlearner import LtuUnlearner

FAST = {"iterations": 3, "bank_configs": {"mi-logreg": {"steps": 30}, "mi-mlp-sorted": {"steps": 30}, "mi-mlp-label": {"steps": 30}}}


def test_the_set_up_is_a_progress_stage_of_its_own(tiny, capsys):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", FAST)
    ltu.unlearn(model, task, progress=True)
    setup, iterations = capsys.readouterr().err.splitlines()  # stderr is not a terminal here: lines, no bars
    steps = len(ltu.config.samplers) + len(ltu.config.bank)
    assert re.fullmatch(rf"ltu set-up: {steps}/{steps} steps \(samplers prepared in \d+\.\d s, MI bank fit in \d+\.\d s\) "
                        r"in \d+\.\d s", setup), setup
    assert re.fullmatch(r"ltu: 3/3 iterations in \d+\.\d s", iterations), iterations


def test_prepare_is_silent_unless_asked(tiny, capsys):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", FAST)
    assert isinstance(ltu, LtuUnlearner)
    ltu.prepare(model, task.view(ltu.reads))
    ltu.unlearn(model, task)
    assert capsys.readouterr().err == ""
