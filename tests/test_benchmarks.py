"""The benchmark scripts run and print what their docs promise."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ltu_cost_ends_with_the_two_ratios(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "ltu_cost.py"), "--repeats", "2", "--warmup", "1", "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(last) == {"full_ratio", "first_order_ratio"} and all(v > 1 for v in last.values())


def test_ltu_cost_times_a_batchnorm_resnet_too(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "ltu_cost.py"), "--repeats", "1", "--warmup", "1", "--threads", "1", "--device", "cpu",
         "--resnet", "--resnet-batch", "4", "--resnet-repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["resnet18_full_ratio"] > last["resnet18_first_order_ratio"] > 1


def test_tuning_ranks_settings_by_their_worse_forget_setting():
    tuning = load("ltu_tuning")
    assert tuning.combinations({"lr": [1, 2], "beta": [3]}) == [{"lr": 1, "beta": 3}, {"lr": 2, "beta": 3}]
    row = lambda config, forget, seed, gap: {"name": "ltu", "config": config, "forget": forget, "seed": seed, "gap": {"avg": gap}, "UT_s": 1.0}
    rows = [row({"lr": 1}, "random:0.1", s, g) for s, g in ((3, 0.2), (4, 0.4))] + [row({"lr": 1}, "random:0.5", 3, 2.0)]
    rows += [row({"lr": 2}, f, 3, 1.0) for f in ("random:0.1", "random:0.5")]
    rows.append(row({"lr": 4}, "random:0.1", 3, 0.1))  # 50% not run yet
    rows.append({**row({"lr": 3}, "random:0.1", 3, 0.0), "error": "diverged"})
    rows[-1].pop("gap")
    lines = tuning.table(rows, ("random:0.1", "random:0.5"))
    assert lines[2].startswith('| ltu {"lr": 2} | 1.00 | 1.00 |')  # worst 1.0 beats lr=1's worst 2.0
    assert lines[3].startswith('| ltu {"lr": 1} | 0.30 | 2.00 |')
    assert {lines[4][:16], lines[5][:16]} == {'| ltu {"lr": 3} ', '| ltu {"lr": 4} '}  # failed or unfinished: last


def test_audit_cost_compares_the_reference_and_ends_with_the_json_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "audit_cost.py"), "--models", "6", "--examples", "3", "--repeats", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[1].startswith("| computation |")
    last = json.loads(lines[-1])
    assert set(last) == {"reference_s", "vectorised_s", "speedup", "max_abs_diff"}
    assert last["max_abs_diff"] == 0.0 and last["speedup"] > 1


def test_tune_cost_ends_with_the_speedup_and_the_overhead(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "tune_cost.py"), "--trials", "2", "--num-samples", "600", "--epochs", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| workers |")
    last = json.loads(lines[-1])
    assert set(last) == {"workers_speedup", "trial_overhead", "trials_per_hour_1", "trials_per_hour_2", "startup_s_2"}
    assert last["workers_speedup"] > 0 and last["trial_overhead"] >= 1


def test_image_folders_prints_before_and_after_and_resumes(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "image_folders.py"), "--out", str(tmp_path / "out"), "--kind", "shapes",
               "--classes", "3", "--per-class", "12", "--size", "8", "--models", "mlp", "--methods", "ft,ga", "--epochs", "3"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rows = json.loads(first.stdout.strip().splitlines()[-1])
    assert [row["method"] for row in rows] == ["ft", "ga"]
    assert all(set(row["before"]) >= {"RA", "TA", "UA"} and len(row["forget_confidence"]) == 2 for row in rows)
    assert rows[0]["gamma"] == 1.0 and rows[0]["resolved"]["lr"] > 0
    assert len(list((tmp_path / "out").glob("shapes-*/train/class*/*.png"))) == 36
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "ft: RA" not in again.stdout and json.loads(again.stdout.strip().splitlines()[-1]) == rows  # finished rows are kept, not rerun


def test_image_folders_writes_scikit_learn_s_digits_as_a_folder(tmp_path):
    image_folders = load("image_folders")
    root = image_folders.write_folder(tmp_path / "digits", kind="digits", classes=10, per_class=0, size=8, noise=0, apart=0, draw=0)
    train, test = (sorted((root / split).glob("digit*/*.png")) for split in ("train", "test"))
    assert len(train) + len(test) == 1797 and len(test) == sum(n // 5 for n in (178, 182, 177, 183, 181, 182, 181, 179, 174, 180))
    assert {p.parent.name for p in test} == {f"digit{d}" for d in range(10)}
    assert not {p.name for p in train} & {p.name for p in test}  # every image in one split only
