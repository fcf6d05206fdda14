"""Where commands write: every output location is checked before any work, outputs get the
mode a plain write gives, and a bench run owns its output folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnkit.bench import runner as bench_mod
from unlearnkit.bench.results import SET_ASIDE
from unlearnkit.cli import commands as cli

METHOD = "example-head-reset"
TRAIN_TOML = '[task]\ndataset = "synthetic"\nmodel = "mlp"\n\n[train]\nepochs = 2\n'
TWO_LABELS = f'[[bench.methods]]\nname = "{METHOD}"\nlabel = "x"\n\n[[bench.methods]]\nname = "{METHOD}"\nlabel = "y"\nepochs = 2\n'
BENCH = ["bench", "--dataset", "synthetic", "--model", "mlp", "--methods", METHOD, "--attack", "none", "--epochs", "1", "--quiet"]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.toml").write_text(TRAIN_TOML)
    return tmp_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        (root / "t.toml").write_text(TRAIN_TOML)
        assert cli.main(["train", "--config", str(root / "t.toml"), "--out", str(root / "a.pt"), "--quiet"]) == 0
    return root / "a.pt"


@pytest.fixture
def no_training(monkeypatch):
    """Any training before the outputs are checked fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("trained before checking where the results go")

    monkeypatch.setattr(cli, "train_model", refuse)
    monkeypatch.setattr(bench_mod, "train_model", refuse)


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("unlearnkit: error: "), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def _read_only(path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    path.mkdir()
    path.chmod(0o555)
    return path


# -- bug 1: every output location is validated before any work ------------------------------


def test_bench_out_that_is_a_file_is_refused_before_training(ws, capsys, no_training):
    (ws / "results").write_text("my notes\n")
    start = time.perf_counter()
    code, _, err = run(BENCH + ["--out", ws / "results"], capsys)
    assert_usage_error(code, err, "--out", "results", "is a file")
    assert time.perf_counter() - start < 30 and (ws / "results").read_text() == "my notes\n"


@pytest.mark.parametrize("layout, needle", [
    ({"parent": "file"}, "is a file"),
    ({"out/cache": "file"}, "cache"),
    ({"out/results.json": "dir"}, "results.json"),
])
def test_bench_out_whose_parts_are_the_wrong_kind_is_refused(layout, needle, ws, capsys, no_training):
    (where, kind), = layout.items()
    (ws / where).parent.mkdir(parents=True, exist_ok=True)
    (ws / where).write_text("x") if kind == "file" else (ws / where).mkdir()
    out = ws / "parent" / "out" if where == "parent" else ws / "out"
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    code, _, err = run(BENCH + ["--out", out], capsys)
    assert_usage_error(code, err, needle)
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before  # nothing written


def test_bench_out_in_a_read_only_folder_is_refused(ws, capsys, no_training):
    locked = _read_only(ws / "locked")
    code, _, err = run(BENCH + ["--out", locked / "out"], capsys)
    assert_usage_error(code, err, "not writable", "locked")


@pytest.mark.parametrize("command", ["train", "unlearn"])
@pytest.mark.parametrize("where", ["below a file", "read-only folder"])
def test_checkpoint_out_that_cannot_be_written_is_refused_before_work(command, where, ws, checkpoint, capsys, no_training, monkeypatch):
    if where == "below a file":
        (ws / "notes").write_text("x")
        out, needle = ws / "notes" / "new.pt", "is a file"
    else:
        out, needle = _read_only(ws / "locked") / "new.pt", "not writable"
    if command == "train":
        argv = ["train", "--config", ws / "t.toml", "--out", out, "--quiet"]
    else:
        monkeypatch.setattr(cli, "load_model", lambda path: (_ for _ in ()).throw(AssertionError("read the input first")))
        argv = ["unlearn", "--checkpoint", checkpoint, "--method", METHOD, "--forget", "random:0.2", "--out", out, "--quiet"]
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "bench"])
def test_a_data_dir_that_is_a_file_is_refused_in_one_line(command, ws, capsys, no_training):
    (ws / "notes").write_text("x")
    argv = ["train", "--config", ws / "t.toml", "--out", ws / "a.pt"] if command == "train" else BENCH + ["--out", ws / "bench"]
    code, _, err = run(argv + ["--data-dir", ws / "notes" / "data"], capsys)
    assert_usage_error(code, err, "--data-dir", "notes", "is a file")
    assert not (ws / "a.pt").exists() and not (ws / "bench").exists()


# -- bug 3: outputs get the mode a plain write gives --------------------------------------------


def test_outputs_get_the_mode_a_plain_write_gives(ws, checkpoint, capsys):
    previous = os.umask(0o022)
    try:
        assert run(["train", "--config", ws / "t.toml", "--out", ws / "a.pt", "--quiet"], capsys)[0] == 0
        assert run(["unlearn", "--checkpoint", ws / "a.pt", "--method", METHOD, "--forget", "random:0.2", "--out", ws / "b.pt",
                    "--quiet"], capsys)[0] == 0
        assert run(BENCH + ["--out", ws / "bench"], capsys)[0] == 0
    finally:
        os.umask(previous)
    files = [ws / "a.pt", ws / "b.pt", *(ws / "bench").rglob("*.*")]
    assert {p.name for p in files} >= {"results.json", "results.md", "results.png"} and len(list((ws / "bench" / "cache").iterdir())) == 2
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}


# -- bug 2: the manifest describes exactly the rows beside it ----------------------------------


def test_a_bench_with_fewer_methods_in_the_same_out_writes_only_its_rows(ws, capsys):
    (ws / "two.toml").write_text(TWO_LABELS)
    argv = BENCH[:6] + ["{methods}"] + BENCH[7:] + ["--config", ws / "two.toml", "--out", ws / "bench"]
    assert run([a if a != "{methods}" else f"{METHOD},x,y" for a in argv], capsys)[0] == 0
    code, out, err = run([a if a != "{methods}" else "y" for a in argv], capsys)
    assert code == 0, err
    results = json.loads((ws / "bench" / "results.json").read_text())
    rows = [r["method"] for r in results["rows"]]
    assert rows == ["original", "retrain", "y"] == [m["label"] for m in results["manifest"]["config"]["methods"]]
    assert {e["method"] for e in results["summary"]} == set(rows) and "| x |" not in out
    assert "2 earlier rows this run does not ask for were set aside" in err


def test_rows_of_seeds_run_in_other_folders_join_with_rows_from(ws, capsys):
    """Seeds run as separate processes into folders of their own come together in one folder."""
    first, second = ws / "seed0", ws / "seed1"
    assert run(BENCH + ["--seeds", "0", "--out", first], capsys)[0] == 0
    assert run(BENCH + ["--seeds", "1", "--out", second], capsys)[0] == 0
    theirs = (second / "results.json").read_text()
    code, _, err = run(BENCH + ["--seeds", "0,1", "--out", first, "--rows-from", second], capsys)
    assert code == 0, err
    results = json.loads((first / "results.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in results["rows"]) == sorted(
        (m, s) for m in ("original", "retrain", METHOD) for s in (0, 1))
    assert all(row in results["rows"] for row in json.loads(theirs)["rows"])  # taken as they were, not run again
    assert len(list((first / "cache").glob("*.pt"))) == 2  # no model trained for seed 1 here
    assert {k.split("/")[-1] for k in results["manifest"]["split_hashes"]} == {"seed0", "seed1"}
    assert (second / "results.json").read_text() == theirs  # the other folder is only read


def test_rows_from_a_folder_of_another_setting_or_none_is_refused(ws, capsys):
    other = ws / "other"
    assert run(BENCH + ["--out", other], capsys)[0] == 0
    code, _, err = run(BENCH[:-3] + ["--epochs", "2", "--quiet", "--out", ws / "bench", "--rows-from", other], capsys)
    assert_usage_error(code, err, str(other / "results.json"), "different setting")
    code, _, err = run(BENCH + ["--out", ws / "bench", "--rows-from", ws / "missing"], capsys)
    assert_usage_error(code, err, "missing", "not a folder")


# -- bug 6: a bench run owns its output folder --------------------------------------------------


def _bench_process(out: Path, methods: str, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "unlearnkit", *BENCH[:6], methods, *BENCH[7:], "--out", str(out), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "UNLEARNKIT_LOAD_PLUGINS": "unlearnkit-example"})


def test_a_second_bench_on_the_same_out_refuses_while_the_first_runs(ws, capsys):
    out = ws / "bench"
    lock = out / ".lock"
    from unlearnkit.bench.locks import exclusive_lock

    with exclusive_lock(lock, note="4242"):  # a run in progress, as another process would hold it
        code, _, err = run(BENCH + ["--out", out], capsys)
    assert_usage_error(code, err, str(out), "pid 4242", "--wait")
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the lock gone with its holder


def test_the_temporary_files_of_a_run_killed_mid_write_are_removed_by_the_next(ws):
    from unlearnkit.bench.locks import owned_dir

    out = ws / "bench"
    (out / "tuned").mkdir(parents=True)
    left = [out / ".results.md.1_wznkr3.tmp", out / "tuned" / ".ft.toml.x8abcdef.tmp"]  # as mkstemp names them
    for tmp in left:
        tmp.write_text("half a file")
    (out / "results.md").write_text("kept")
    (out / ".notes.tmp").write_text("a user's")  # not a name mkstemp gives: kept
    with owned_dir(out):
        assert not any(tmp.exists() for tmp in left)
    assert (out / "results.md").read_text() == "kept" and (out / ".notes.tmp").exists()


def test_two_benches_on_the_same_out_with_wait_keep_both_and_train_once(ws):
    out, config = ws / "bench", ws / "two.toml"
    config.write_text(TWO_LABELS)
    runs = {"x": _bench_process(out, f"{METHOD},x", "--config", str(config), "--wait")}
    time.sleep(1.0)
    runs["y"] = _bench_process(out, f"{METHOD},y", "--config", str(config), "--wait")
    results = {label: p.communicate(timeout=300) for label, p in runs.items()}
    assert [p.returncode for p in runs.values()] == [0, 0], results
    (waited,) = [label for label, (_, err) in results.items() if "waiting for" in err]  # one ran after the other
    (earlier,) = set(runs) - {waited}
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted(r["method"] for r in rows) == sorted(["original", "retrain", METHOD, waited])
    aside = json.loads((out / SET_ASIDE).read_text())["rows"]  # the earlier run's extra row is kept, not lost
    assert [r["method"] for r in aside] == [earlier]
    assert len(list((out / "cache").glob("*.pt"))) == 2  # the later run reused the earlier run's models
