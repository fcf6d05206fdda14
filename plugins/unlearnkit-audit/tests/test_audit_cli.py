"""`unlearnkit audit` end to end on a tiny population: outputs, the cache, resuming, bad usage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.cli.commands import main

TINY = ["audit", "--dataset", "synthetic", "--model", "mlp", "--methods", "ft", "--models", "6", "--quiet"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny audit (6 models per population, FT): its folder and what the command printed."""
    out = tmp_path_factory.mktemp("audit") / "out"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def _rows(out: Path) -> dict[str, dict]:
    return {r["method"]: r for r in json.loads((out / "audit.json").read_text())["rows"]}


def test_every_output_is_written(tiny):
    rows = _rows(tiny)
    assert list(rows) == ["original", "retrain", "ft"]
    for row in rows.values():
        assert set(row["audits"]) == {"epsilon", "ulira"} and row["models"] == 6
        assert {"F", "final"} <= set(row["audits"]["epsilon"]["summary"])
        assert {"accuracy", "AUC", "TPR@1%FPR", "TPR@0.1%FPR"} <= set(row["audits"]["ulira"]["summary"])
    manifest = json.loads((tiny / "audit.json").read_text())["manifest"]
    assert manifest["config"]["models"] == 6 and set(manifest["populations"]) == {"repeated", "shadow"}
    with open(tiny / "per_example.csv") as fh:
        table = list(csv.DictReader(fh))
    assert set(table[0]) == {"method", "example", "epsilon", "ulira_accuracy"}
    examples = manifest["forget_examples"]
    assert len(table) == 3 * examples and len({r["example"] for r in table}) == examples
    assert "| ft | 1 |" in (tiny / "audit.md").read_text()
    assert (tiny / "audit.png").stat().st_size > 0


def test_the_reference_rows_mean_what_they_say(tiny):
    rows = _rows(tiny)
    # The original, N times over, is a point mass: every example at the cap, F = 0.
    assert rows["original"]["audits"]["epsilon"]["summary"]["F"] == 0.0
    # Retrain as a method runs with seeds of its own: identical models would score exactly 1.
    assert rows["retrain"]["audits"]["epsilon"]["summary"]["F"] < 1.0


def test_a_rerun_builds_nothing_and_a_killed_run_resumes(tiny):
    cache = tiny / "cache"
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pt")}
    csv_before = (tiny / "per_example.csv").read_bytes()
    assert main([*TINY, "--out", str(tiny)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pt")} == before  # every model came from the cache
    unlearned = sorted(cache.glob("unlearned-*.pt"))
    for path in unlearned[::2]:  # as if the run had been killed before building these
        path.unlink()
    assert main([*TINY, "--out", str(tiny)]) == 0
    assert len(list(cache.glob("unlearned-*.pt"))) == len(unlearned)
    assert (tiny / "per_example.csv").read_bytes() == csv_before  # rebuilt models are the same models


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "7"], "--models 7: the shadow population (U-LiRA) pairs its models"),
    (["--models", "4"], "audit 'ulira' needs at least 6 models"),
    (["--models", "1", "--audits", "epsilon"], "audit 'epsilon' needs at least 2 models"),
    (["--audits", "epsilonn"], "unknown audit 'epsilonn'; did you mean 'epsilon'"),
    (["--forget", "random:0.1,random:0.2"], "an audit takes one forget spec"),
    (["--models", "x"], "--models: malformed value 'x'"),
])
def test_bad_usage_exits_2_naming_the_value_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main([*TINY, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unlearnkit: error:") and message in err[0], err
    assert not out.exists()


def test_another_setting_in_the_same_folder_is_refused(tiny, capsys):
    assert main([*TINY, "--out", str(tiny), "--seed", "1"]) == 2
    assert "holds an audit of another setting" in capsys.readouterr().err


@pytest.mark.slow
def test_two_torchrun_ranks_give_one_process_numbers(tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "unlearnkit",
           *TINY, "--device", "cpu", "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "two" / "per_example.csv").read_bytes() == (tiny / "per_example.csv").read_bytes()
