"""A results folder written by an earlier version resumes: the hashes that decide whether its
setting is accepted and a finished row reused do not change."""

from __future__ import annotations

import pytest

from unlearnkit.bench import plan
from unlearnkit.bench import runner as bench
from unlearnkit.bench.plan import Job, MethodSpec, job_identity
from unlearnkit.bench.results import row_identity

ROW = {"table": "main", "method": "b", "name": "example-head-reset", "config": {"epochs": 2}, "forget": "random:0.1",
       "retain_access": 1.0, "seed": 0}


@pytest.mark.parametrize("row, job, pinned", [
    (ROW, Job("main", MethodSpec("example-head-reset", "b", None, {"epochs": 2}), "random:0.1", 1.0, 0), "894264927665f7c9"),
    ({**ROW, "table": "sequential", "forget": "random:0.05", "request": 3},
     Job("sequential", MethodSpec("example-head-reset", "b", None, {"epochs": 2}), "random:0.05", 1.0, 0, 3), "6c1bc0d098cd6897"),
])
def test_a_row_keeps_the_identity_its_job_had_when_it_was_written(row, job, pinned):
    assert row_identity(row) == job_identity(job) == pinned


def test_a_setting_keeps_the_hash_its_results_files_were_written_with(tmp_path):
    settings = plan.resolve({"dataset": "synthetic", "model": "mlp", "methods": ["example-head-reset"], "attack": None,
                              "train": {"epochs": 2}})
    assert bench.Bench(settings, tmp_path).manifest["setting_hash"] == "b4fddf91b5dd0e9c"
