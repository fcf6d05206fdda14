"""README's results table says where it was made, and a bench of its setting made elsewhere says
that its rows need not match (threads and the torch build move them: docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

from unlearnkit.bench import plan, provenance
from unlearnkit.bench import runner as bench
from unlearnkit.cli import commands as cli

ROOT = Path(__file__).parents[1]
SAME = {"setting_hash": provenance.README_TABLE["setting_hash"], **{k: provenance.README_TABLE[k]
        for k in ("torch", "threads", "world_size", "device")}}


def test_readme_names_the_build_and_threads_of_its_table():
    results = (ROOT / "README.md").read_text().split("## Results", 1)[1].split("\n## ", 1)[0]
    table = provenance.README_TABLE
    assert f"torch {table['torch']}" in results and f"{table['threads']} intra-op threads" in results
    assert "docs/scaling.md" in results  # how far rows move


def test_the_recorded_setting_is_the_quick_preset(tmp_path):
    """README's table is `unlearnkit bench` at its defaults; a change of the quick preset's setting
    means the table (and README_TABLE) must be made again."""
    manifest = bench.Bench(plan.resolve({"preset": "quick"}), tmp_path).manifest
    assert manifest["setting_hash"] == provenance.README_TABLE["setting_hash"]


def test_the_note_names_what_differs_and_only_for_the_readme_setting():
    assert provenance.readme_note(SAME) is None
    note = provenance.readme_note({**SAME, "torch": "2.5.1+cpu", "threads": 1})
    assert note.startswith("note: README.md's results table was made with torch ") and "\n" not in note
    assert "this run: torch 2.5.1+cpu, 1 thread(s)" in note
    assert provenance.readme_note({**SAME, "setting_hash": "another", "threads": 1}) is None


def test_bench_prints_the_note_and_its_last_line_names_every_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    argv = ["bench", "--dataset", "synthetic", "--model", "mlp", "--methods", "example-head-reset", "--attack", "none",
            "--epochs", "1", "--quiet", "--out", str(tmp_path / "b")]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    out = tmp_path / "b"
    assert lines[-1] == f"results: {out / 'results.json'}, {out / 'results.md'} and {out / 'results.png'}"
    assert not any(line.startswith("note: ") for line in lines)  # not README's setting
    setting = json.loads((out / "results.json").read_text())["manifest"]["setting_hash"]
    monkeypatch.setitem(provenance.README_TABLE, "setting_hash", setting)
    monkeypatch.setitem(provenance.README_TABLE, "torch", "0.0.0+elsewhere")
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("note: README.md's results table was made with torch 0.0.0+elsewhere")
