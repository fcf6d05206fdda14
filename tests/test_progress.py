"""Progress: bars on a terminal, whole lines (no escape codes) when stderr is a log, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest
from tqdm.auto import tqdm

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.engine.progress import LineProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_log_gets_lines(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert isinstance(uk.progress_bar(range(3), desc="x"), tqdm)
    monkeypatch.undo()
    assert list(uk.progress_bar(range(3), desc="train", unit="epoch")) == [0, 1, 2]
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"train: 3/3 epochs in \d+\.\d s", line)


def test_stages_advanced_by_hand_log_one_line_each(capsys):
    bar = uk.progress_bar(desc="bench", total=3, initial=1, each=True)
    assert isinstance(bar, LineProgress)
    for name in ("ft", "ga"):
        bar.set_postfix_str(f"{name}: done")
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err.splitlines()[:2] == ["bench 2/3: ft: done", "bench 3/3: ga: done"]


def _stops_during(step, total):
    for i in uk.progress_bar(range(total), desc="salun", unit="epoch"):
        if i + 1 == step:  # a stop rule returns within this epoch
            return i


@pytest.mark.parametrize("step", [1, 4])
def test_a_loop_left_early_says_where_it_stopped_never_n_of_total(step, capsys):
    _stops_during(step, 10)
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"salun: stopped in epoch {step}/10 in \d+\.\d s", line)  # not "salun: 0/10 epochs"


def test_disabled_progress_is_silent(capsys):
    assert list(uk.progress_bar(range(3), desc="x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.toml").write_text('[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = 2\n')
    return tmp_path


def test_commands_log_one_plain_line_per_finished_stage(ws, capsys):
    assert main(["train", "--config", str(ws / "t.toml"), "--out", str(ws / "a.pt")]) == 0
    assert main(["bench", "--dataset", "synthetic", "--model", "mlp", "--methods", "example-head-reset", "--attack", "none",
                 "--epochs", "2", "--out", str(ws / "bench")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert re.fullmatch(r"train: 2/2 epochs in \d+\.\d s", lines[0])
    assert any(re.fullmatch(r"original \(seed 0\): 2/2 epochs in \d+\.\d s", line) for line in lines)
    assert any(line.startswith("bench 3/3: example-head-reset (main, random:0.1, γ 1, seed 0): UA ") for line in lines)
    assert main(["train", "--config", str(ws / "t.toml"), "--out", str(ws / "b.pt"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_the_python_api_shows_progress_on_request(ws, capsys):
    task = uk.make_task("synthetic", forget="random:0.2", seed=0)
    model = uk.train_model(uk.build_model("mlp", task, seed=0), task, seed=0, progress=True)
    uk.get_unlearner("example-head-reset").unlearn(model, task, progress=True)
    from unlearnkit.bench import plan
    from unlearnkit.bench import runner as bench

    settings = plan.resolve({"dataset": "synthetic", "model": "mlp", "methods": ["example-head-reset"], "attack": None,
                              "train": {"epochs": 2}})
    bench.Bench(settings, ws / "bench", progress=True).run()
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"train: \d+/\d+ epochs in \d+\.\d s", lines[0])
    assert lines[-1].startswith("bench: 3/3 in ")
    bench.Bench(settings, ws / "quiet").run()
    assert capsys.readouterr().err == ""


def test_a_loop_that_stops_early_says_where(capsys):
    for i in uk.progress_bar(range(10), desc="ltu", unit="iteration"):
        if i == 3:
            break
    # left during the 4th iteration (a stop rule breaks after the step it checked)
    assert re.fullmatch(r"ltu: stopped in iteration 4/10 in \d+\.\d s", capsys.readouterr().err.strip())
