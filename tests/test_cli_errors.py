"""The command line: every bad input exits with status 2 and one line naming the bad value,
leaves no partial output, and the good path (train, unlearn, evaluate, bench) works on the
synthetic dataset with the example plugin (`example-head-reset`, installed from tests/example_plugin)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from unlearnkit.cli.commands import main
from unlearnkit.data.tasks import make_task
from unlearnkit.engine.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint

TRAIN_TOML = '[task]\ndataset = "synthetic"\nmodel = "mlp"\n\n[train]\nepochs = 3\n'
METHOD = "example-head-reset"


class _WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a trained checkpoint a.pt, its unlearned b.pt and a set of bad inputs."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARNKIT_DATA_DIR", str(root / "data"))
        (root / "t.toml").write_text(TRAIN_TOML)
        assert main(["train", "--config", str(root / "t.toml"), "--out", str(root / "a.pt"), "--quiet"]) == 0
        assert main(["unlearn", "--checkpoint", str(root / "a.pt"), "--method", METHOD, "--forget", "random:0.2",
                     "--out", str(root / "b.pt"), "--quiet"]) == 0
        files = {
            "bad.toml": "[task\ndataset = 1\n",
            "key.toml": '[task]\ndataset = "synthetic"\nfoo = 1\n',
            "section.toml": "[extra]\nx = 1\n",
            "seeds.toml": '[bench]\nseeds = "0,1"\n',
            "seeds-item.toml": '[bench]\nseeds = [0, "x"]\n',
            "tables.toml": '[bench]\ntables = "main"\n',
            "gamma.toml": '[task]\ndataset = "synthetic"\nretain_access = 1.5\n',
            "epochs.toml": '[task]\ndataset = "synthetic"\nmodel = "mlp"\n[train]\nepochs = "three"\n',
            "seed.toml": "[task]\nseed = true\n",
            "dataset.toml": '[task]\ndataset = "synthetic"\nmodel = "mlp"\n[dataset]\nnum_samples = -4\n',
            "model.toml": '[task]\ndataset = "synthetic"\nmodel = "mlp"\n[model]\nwidth = 3\n',
            "forget.toml": '[task]\ndataset = "synthetic"\nmodel = "mlp"\nforget = "random:1.5"\n',
            "method.toml": f'[method]\nname = "{METHOD}"\nlr = -1\n',
            "methods.toml": "[bench]\nmethods = [3]\n",
            "methods-cfg.toml": f'[[bench.methods]]\nname = "{METHOD}"\nlr = -1\n',
        }
        for name, text in files.items():
            (root / name).write_text(text)
        task = make_task("synthetic", seed=0)  # the checkpoints' task: seed 0
        train, val = task.train.indices.tolist(), task.val.indices.tolist()
        (root / "oor.txt").write_text("1 2 320\n")
        (root / "dup.txt").write_text(f"{train[0]} {train[1]} {train[0]}\n")
        (root / "inval.txt").write_text(f"{val[0]}\n")
        (root / "all.txt").write_text(" ".join(map(str, train)))
        (root / "empty.txt").write_text("# none\n")
        data = (root / "a.pt").read_bytes()
        (root / "truncated.pt").write_bytes(data[: len(data) // 2])
        (root / "text.pt").write_text("epoch 1: loss 0.42\nepoch 2: loss 0.31\n")  # a log saved under the wrong name
        torch.save(torch.nn.Linear(16, 4).state_dict(), root / "foreign.pt")
        with open(root / "evil.pt", "wb") as fh:
            pickle.dump({"format": FORMAT, "format_version": FORMAT_VERSION, "x": _WritesMarker(root / "MARKER")}, fh, protocol=4)
        yield root


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_usage_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("unlearnkit: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


# -- bad input: each one exits 2 with one line and creates nothing --------------------------

TRAIN = ["train", "--config", "{ws}/t.toml", "--quiet"]

BAD_TRAIN = {
    "unknown dataset": (["train", "--dataset", "cifra10", "--model", "mlp"], ["unknown dataset 'cifra10'", "did you mean 'cifar10'"]),
    "unknown model": (["train", "--dataset", "synthetic", "--model", "mpl"], ["unknown model 'mpl'", "did you mean 'mlp'"]),
    "malformed toml": (["train", "--config", "{ws}/bad.toml"], ["bad.toml", "malformed TOML", "line 1"]),
    "unknown toml key": (["train", "--config", "{ws}/key.toml"], ["key.toml", "$.task", "unknown key(s) 'foo'"]),
    "unknown toml section": (["train", "--config", "{ws}/section.toml"], ["$: unknown key(s) 'extra'"]),
    "toml seeds not a list": (["train", "--config", "{ws}/seeds.toml"], ["seeds.toml", "$.bench.seeds: expected a list", "'0,1'"]),
    "toml seed not an int": (["train", "--config", "{ws}/seeds-item.toml"], ["$.bench.seeds[1]", "'x'"]),
    "toml gamma": (["train", "--config", "{ws}/gamma.toml"], ["$.task.retain_access", "1.5"]),
    "toml epochs type": (["train", "--config", "{ws}/epochs.toml"], ["$.train.epochs", "'three'"]),
    "toml seed bool": (["train", "--config", "{ws}/seed.toml"], ["$.task.seed", "True"]),
    "toml dataset option": (["train", "--config", "{ws}/dataset.toml"], ["$.dataset.synthetic.num_samples", "-4"]),
    "toml model option": (["train", "--config", "{ws}/model.toml"], ["$.mlp", "'width'"]),
    "toml forget": (["train", "--config", "{ws}/forget.toml"], ["random:1.5", "(0, 1)"]),
    "missing toml": (["train", "--config", "{ws}/nope.toml"], ["nope.toml", "not found"]),
    "toml is a folder": (["train", "--config", "{ws}"], ["is a folder; expected a TOML file"]),
    "seed -1": (TRAIN + ["--seed", "-1"], ["--seed", "'-1'"]),
    "seed x": (TRAIN + ["--seed", "x"], ["--seed", "'x'"]),
    "seed too big": (TRAIN + ["--seed", "9" * 30], ["--seed", "9" * 30]),
    "seed superscript": (TRAIN + ["--seed", "²"], ["--seed", "'²'"]),
    "epochs 0": (TRAIN + ["--epochs", "0"], ["$.train.epochs: must be > 0, got 0"]),
    "device": (TRAIN + ["--device", "tpu"], ["--device 'tpu'"]),
    "no command": ([], ["command"]),
    "unknown command": (["trian"], ["invalid choice: 'trian'"]),
}


def _argv(template, ws) -> list[str]:
    return [a.format(ws=ws) for a in template]


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input(case, ws, capsys):
    argv, needles = BAD_TRAIN[case]
    out = ws / f"train-{case.replace(' ', '-')}.pt"
    code, _, err = run(_argv(argv, ws) + (["--out", out] if argv else []), capsys)
    assert_one_line_usage_error(code, err, *needles)
    assert not out.exists()


UNLEARN = ["unlearn", "--checkpoint", "{ws}/a.pt", "--quiet"]
WITH_METHOD = UNLEARN + ["--method", METHOD]

BAD_UNLEARN = {
    "unknown method": (UNLEARN + ["--method", "example-head-rest", "--forget", "random:0.1"],
                       ["unknown unlearner 'example-head-rest'", "did you mean 'example-head-reset'"]),
    "no method": (UNLEARN + ["--forget", "random:0.1"], ["--method is required"]),
    "no forget": (WITH_METHOD, ["--forget is required"]),
    "ratio 1.5": (WITH_METHOD + ["--forget", "random:1.5"], ["'random:1.5'", "(0, 1)"]),
    "ratio 0": (WITH_METHOD + ["--forget", "random:0"], ["'random:0'"]),
    "ratio 1": (WITH_METHOD + ["--forget", "random:1"], ["'random:1'"]),
    "ratio negative": (WITH_METHOD + ["--forget", "random:-0.1"], ["-0.1"]),
    "ratio text": (WITH_METHOD + ["--forget", "random:abc"], ["'abc' is not a number"]),
    "ratio rounds to nothing": (WITH_METHOD + ["--forget", "random:0.001"], ["the forget set is empty"]),
    "unknown kind": (WITH_METHOD + ["--forget", "rand:0.1"], ["unknown kind 'rand'"]),
    "no kind": (WITH_METHOD + ["--forget", "0.1"], ["'0.1'", "random:RATIO"]),
    "class 9": (WITH_METHOD + ["--forget", "class:9"], ["class 9 does not exist", "0..3"]),
    "class x": (WITH_METHOD + ["--forget", "class:x"], ["'x'"]),
    "index file missing": (WITH_METHOD + ["--forget", "indices:{ws}/nope.txt"], ["nope.txt", "not found"]),
    "index out of range": (WITH_METHOD + ["--forget", "indices:{ws}/oor.txt"], ["index 320 is out of range"]),
    "index duplicated": (WITH_METHOD + ["--forget", "indices:{ws}/dup.txt"], ["appears more than once"]),
    "index in val": (WITH_METHOD + ["--forget", "indices:{ws}/inval.txt"], ["held-out validation split"]),
    "index file empty": (WITH_METHOD + ["--forget", "indices:{ws}/empty.txt"], ["the forget set is empty"]),
    "forget everything": (WITH_METHOD + ["--forget", "indices:{ws}/all.txt"], ["whole training set"]),
    "gamma 0": (WITH_METHOD + ["--forget", "random:0.1", "--retain-access", "0"], ["--retain-access", "got 0"]),
    "gamma 1.5": (WITH_METHOD + ["--forget", "random:0.1", "--retain-access", "1.5"], ["--retain-access", "1.5"]),
    "gamma -1": (WITH_METHOD + ["--forget", "random:0.1", "--retain-access=-1"], ["--retain-access", "-1"]),
    "gamma nan": (WITH_METHOD + ["--forget", "random:0.1", "--retain-access", "nan"], ["--retain-access", "nan"]),
    "gamma text": (WITH_METHOD + ["--forget", "random:0.1", "--retain-access", "most"], ["--retain-access", "'most'"]),
    "seed": (WITH_METHOD + ["--forget", "random:0.1", "--seed", "0,x"], ["--seed", "'0,x'"]),
    "method option": (UNLEARN + ["--forget", "random:0.1", "--config", "{ws}/method.toml"], [f"$.{METHOD}.lr", "-1"]),
    "checkpoint missing": (["unlearn", "--checkpoint", "{ws}/nope.pt", "--method", METHOD, "--forget", "random:0.1"], ["nope.pt", "not found"]),
    "checkpoint truncated": (["unlearn", "--checkpoint", "{ws}/truncated.pt", "--method", METHOD, "--forget", "random:0.1"],
                             ["truncated.pt", "unreadable"]),
    "checkpoint foreign": (["unlearn", "--checkpoint", "{ws}/foreign.pt", "--method", METHOD, "--forget", "random:0.1"],
                           ["foreign.pt", "not an unlearnkit checkpoint"]),
    "checkpoint with code": (["unlearn", "--checkpoint", "{ws}/evil.pt", "--method", METHOD, "--forget", "random:0.1"],
                             ["evil.pt", "refused"]),
}


@pytest.mark.parametrize("case", list(BAD_UNLEARN))
def test_bad_unlearn_input(case, ws, capsys):
    argv, needles = BAD_UNLEARN[case]
    out = ws / f"unlearn-{case.replace(' ', '-')}.pt"
    before = (ws / "a.pt").read_bytes()
    code, _, err = run(_argv(argv, ws) + ["--out", out], capsys)
    assert_one_line_usage_error(code, err, *needles)
    assert not out.exists() and not (ws / "MARKER").exists()
    assert (ws / "a.pt").read_bytes() == before


BAD_EVALUATE = {
    "other forget than recorded": (["evaluate", "--checkpoint", "{ws}/b.pt", "--forget", "random:0.3", "--attack", "none"],
                                   ["'random:0.2'", "'random:0.3'"]),
    "other dataset": (["evaluate", "--checkpoint", "{ws}/b.pt", "--dataset", "mnist1d", "--attack", "none"], ["'synthetic'", "'mnist1d'"]),
    "no forget for an original": (["evaluate", "--checkpoint", "{ws}/a.pt", "--attack", "none"], ["--forget is required"]),
    "class that does not exist": (["evaluate", "--checkpoint", "{ws}/a.pt", "--forget", "class:4"], ["class 4 does not exist"]),
    "unknown attack": (["evaluate", "--checkpoint", "{ws}/b.pt", "--attack", "nosuch"], ["unknown attack 'nosuch'"]),
    "checkpoint with code": (["evaluate", "--checkpoint", "{ws}/evil.pt"], ["evil.pt", "refused", "never runs code"]),
    "checkpoint is a folder": (["evaluate", "--checkpoint", "{ws}"], ["is a directory"]),
    "checkpoint is text": (["evaluate", "--checkpoint", "{ws}/text.pt"],
                           ["text.pt", "is not an unlearnkit checkpoint: it is a text file", "'epoch 1: loss 0.42'"]),
}


@pytest.mark.parametrize("case", list(BAD_EVALUATE))
def test_bad_evaluate_input(case, ws, capsys):
    argv, needles = BAD_EVALUATE[case]
    code, out, err = run(_argv(argv, ws), capsys)
    assert_one_line_usage_error(code, err, *needles)
    assert out == "" and not (ws / "MARKER").exists()


BENCH = ["bench", "--dataset", "synthetic", "--model", "mlp", "--attack", "none", "--quiet", "--epochs", "1"]

BAD_BENCH = {
    "unknown method": (BENCH + ["--methods", "example-head-rest"], ["unknown unlearner 'example-head-rest'", "did you mean"]),
    "unknown dataset": (["bench", "--dataset", "synthetik", "--methods", METHOD], ["unknown dataset 'synthetik'", "'synthetic'"]),
    "seeds 0,x": (BENCH + ["--seeds", "0,x"], ["malformed seeds '0,x'"]),
    "seeds -1": (BENCH + ["--seeds=-1"], ["malformed seeds '-1'"]),
    "seeds repeated": (BENCH + ["--methods", METHOD, "--seeds", "0,0"], ["distinct", "[0, 0]"]),
    "forget ratio": (BENCH + ["--methods", METHOD, "--forget", "random:0.1,random:2"], ["'random:2'"]),
    "gamma": (BENCH + ["--retain-access", "2"], ["--retain-access", "2"]),
    "table": (BENCH + ["--methods", METHOD, "--tables", "main,foo"], ["unknown table 'foo'"]),
    "preset": (BENCH + ["--preset", "fast"], ["invalid choice: 'fast'"]),
    "epochs 0": (BENCH + ["--methods", METHOD, "--epochs", "0"], ["$.train.epochs: must be > 0, got 0"]),
    "unknown attack": (BENCH[:5] + ["--methods", METHOD, "--attack", "nosuch", "--epochs", "1", "--quiet"], ["unknown attack 'nosuch'"]),
    "toml methods": (BENCH + ["--config", "{ws}/methods.toml"], ["$.bench.methods[0]", "got 3"]),
    "toml method option": (BENCH + ["--config", "{ws}/methods-cfg.toml"], ["$.bench.methods[0].lr", "-1"]),
    "toml seeds": (BENCH + ["--config", "{ws}/seeds.toml"], ["$.bench.seeds: expected a list", "'0,1'"]),
    "toml tables": (BENCH + ["--config", "{ws}/tables.toml"], ["$.bench.tables: expected a list", "'main'"]),
    # a dataset that is not downloaded: refused before anything is trained or written
    "missing cifar10": (["bench", "--dataset", "cifar10", "--model", "resnet18", "--methods", METHOD, "--attack", "none",
                         "--data-dir", "{ws}/no-data", "--quiet"], ["'cifar10' not found", "no-data", "--download"]),
}


@pytest.mark.parametrize("case", list(BAD_BENCH))
def test_bad_bench_input(case, ws, capsys):
    argv, needles = BAD_BENCH[case]
    out = ws / f"bench-{case.replace(' ', '-')}"
    code, _, err = run(_argv(argv, ws) + ["--out", out], capsys)
    assert_one_line_usage_error(code, err, *needles)
    assert not out.exists()


def test_train_refuses_an_existing_output(ws, capsys):
    before = (ws / "a.pt").read_bytes()
    code, _, err = run(TRAIN[:1] + ["--config", ws / "t.toml", "--out", ws / "a.pt", "--quiet"], capsys)
    assert_one_line_usage_error(code, err, "exists", "--force")
    assert (ws / "a.pt").read_bytes() == before


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_an_output_that_is_a_folder_says_so_with_or_without_force(force, ws, capsys):
    """Not "exists; pass --force" first and "is a directory" after: --force would not help."""
    (ws / "folder.pt").mkdir(exist_ok=True)
    code, _, err = run(TRAIN[:1] + ["--config", ws / "t.toml", "--out", ws / "folder.pt", "--quiet", *force], capsys)
    assert_one_line_usage_error(code, err, "is a directory; expected a file name")
    (ws / "r" / "report.json").mkdir(parents=True, exist_ok=True)  # where unlearn's report goes
    code, _, err = run(["unlearn", "--checkpoint", ws / "a.pt", "--method", METHOD, "--forget", "random:0.2",
                        "--out", ws / "r" / "b.pt", "--quiet", *force], capsys)
    assert_one_line_usage_error(code, err, "report.json is a folder")


@pytest.mark.parametrize("spelling", ["a.pt", "./a.pt", "sub/../a.pt", "{ws}/a.pt"])
def test_unlearn_refuses_to_overwrite_its_input(spelling, ws, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    (ws / "sub").mkdir(exist_ok=True)
    before = (ws / "a.pt").read_bytes()
    code, _, err = run(["unlearn", "--checkpoint", "a.pt", "--method", METHOD, "--forget", "random:0.2",
                        "--out", spelling.format(ws=ws), "--force", "--quiet"], capsys)
    assert_one_line_usage_error(code, err, "is the input checkpoint")
    assert (ws / "a.pt").read_bytes() == before


# -- through a real process: the exit status and a stderr of one line -----------------------


@pytest.mark.parametrize("argv, needle", [
    (["train", "--config", "{ws}/bad.toml", "--out", "{ws}/proc.pt"], "malformed TOML"),
    (["evaluate", "--checkpoint", "{ws}/evil.pt"], "refused"),
    (["unlearn", "--checkpoint", "{ws}/a.pt", "--method", METHOD, "--forget", "random:7", "--out", "{ws}/proc.pt"], "'random:7'"),
])
def test_errors_through_a_real_process(argv, needle, ws):
    env = {**os.environ, "UNLEARNKIT_DATA_DIR": str(ws / "data"), "UNLEARNKIT_LOAD_PLUGINS": "unlearnkit-example"}
    result = subprocess.run([sys.executable, "-m", "unlearnkit", *_argv(argv, ws)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unlearnkit: error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (ws / "proc.pt").exists() and not (ws / "MARKER").exists()


# -- the good path --------------------------------------------------------------------------


def test_train_and_unlearn_record_what_they_did(ws):
    state_a, meta_a = load_checkpoint(ws / "a.pt")
    state_b, meta_b = load_checkpoint(ws / "b.pt")
    assert (meta_a["dataset"], meta_a["model"], meta_a["kind"], meta_a["recipe"]["epochs"]) == ("synthetic", "mlp", "original", 3)
    assert meta_b["kind"] == "unlearned" and meta_b["unlearned"]["method"] == METHOD
    assert meta_b["unlearned"]["forget"] == "random:0.2" and meta_b["unlearned"]["source"] == str(ws / "a.pt")
    head = sorted(state_a)[-1]  # the head was re-initialised and refitted; the body kept
    assert not torch.equal(state_a[head], state_b[head])
    assert torch.equal(state_a[sorted(state_a)[0]], state_b[sorted(state_b)[0]])


def test_evaluate_prints_json_metrics(ws, capsys):
    code, out, err = run(["evaluate", "--checkpoint", ws / "b.pt", "--json", "--attack", "none"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["forget"] == "random:0.2" and result["attack"] is None and "MIA" not in result
    assert all(0 <= result[k] <= 100 for k in ("UA", "RA", "TA"))
    # the same --forget the checkpoint recorded is accepted, spelled differently
    code, out, _ = run(["evaluate", "--checkpoint", ws / "b.pt", "--json", "--attack", "none", "--forget", "random:0.20"], capsys)
    assert code == 0 and json.loads(out)["UA"] == result["UA"]


def test_bench_writes_results_and_resumes_without_recomputing(ws, capsys):
    out = ws / "bench"
    argv = ["bench", "--dataset", "synthetic", "--model", "mlp", "--methods", METHOD, "--attack", "none", "--epochs", "3",
            "--out", out, "--quiet"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["method"] for r in results["rows"]) == sorted(["original", "retrain", METHOD])
    assert results["manifest"]["config"]["dataset_config"] == {}  # the synthetic defaults, not the quick preset's mnist1d size
    assert (out / "results.md").read_text().strip() and METHOD in stdout
    cache = sorted((out / "cache").iterdir())
    assert [p.name.split("-")[0] for p in cache] == ["original", "retrain"]
    stamps = {p: p.stat().st_mtime_ns for p in cache}

    code, _, err = run(argv, capsys)  # everything is done: nothing is recomputed
    assert code == 0, err
    again = json.loads((out / "results.json").read_text())
    assert again["rows"] == results["rows"]
    assert {p: p.stat().st_mtime_ns for p in cache} == stamps

    # an interrupted run: the method's row is missing; only it is recomputed, the models come from the cache
    results["rows"] = [r for r in results["rows"] if r["method"] != METHOD]
    (out / "results.json").write_text(json.dumps(results))
    code, _, err = run(argv, capsys)
    assert code == 0, err
    resumed = json.loads((out / "results.json").read_text())
    assert sorted(r["method"] for r in resumed["rows"]) == sorted(["original", "retrain", METHOD])
    assert [r for r in resumed["rows"] if r["method"] != METHOD] == results["rows"]
    assert {p: p.stat().st_mtime_ns for p in cache} == stamps and sorted((out / "cache").iterdir()) == cache

    # another setting into the same folder is refused, and the results stay
    code, _, err = run(argv[:-3] + ["--epochs", "2", "--out", out, "--quiet"], capsys)
    assert_one_line_usage_error(code, err, "different setting")
    assert json.loads((out / "results.json").read_text())["rows"] == resumed["rows"]
