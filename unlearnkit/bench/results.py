"""A bench folder's results: `results.json` (manifest, rows, summary), `results.md`, the plot,
and the rows of earlier runs that the latest run did not ask for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from unlearnkit.bench import report
from unlearnkit.core.config import config_hash
from unlearnkit.core.errors import UsageError
from unlearnkit.engine import distributed
from unlearnkit.engine.checkpoint import atomic_write_text

SET_ASIDE = "rows-set-aside.json"  # finished rows of earlier runs in the folder that the latest run did not ask for


def identity(place: tuple, name: str, config: dict[str, Any]) -> str:
    """What a result row must match to be reused: its place in the tables (`plan.Job.key()`) and
    the method's registered name and settings."""
    return config_hash([*place, name, config])


def row_identity(row: dict[str, Any]) -> str:
    """`identity` of the job that produced `row`."""
    request = (row["request"],) if row.get("request") else ()
    return identity((row["table"], row["method"], row["forget"], row["retain_access"], row["seed"], *request),
                    row["name"], row["config"])


def recorded_setting(folder: Path) -> Optional[str]:
    """The setting hash in `folder`'s results.json (None when there is no readable one)."""
    try:
        return json.loads((Path(folder) / "results.json").read_text())["manifest"]["setting_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ResultsFolder:
    """The results of one setting in folder `out`: its `manifest` and finished `rows`.

    `wanted` maps the identity of each row the run asks for, in run order, to its task's key in
    the manifest's `split_hashes` (`FORGET/seedS`). `results.json` holds exactly those rows:
    rows an earlier run in `out` finished for them are reused, the others are moved to
    `SET_ASIDE` (and taken back by a later run that asks for them); a folder of another setting
    (`manifest["setting_hash"]`) is refused. Writes are atomic and made by rank 0 (`rank0`) only.
    """

    def __init__(self, out: Path, manifest: dict[str, Any], wanted: dict[str, str], *, rank0: bool = True):
        self.out, self.manifest, self.rank0 = Path(out), manifest, rank0
        self.rows: list[dict[str, Any]] = []
        self._order = {key: i for i, key in enumerate(wanted)}
        self._splits = set(wanted.values())

    @property
    def path(self) -> Path:
        """`results.json`."""
        return self.out / "results.json"

    def load_previous(self, sources: Sequence[Path] = ()) -> tuple[int, int]:
        """Reuse the finished rows of earlier runs of the same setting that this run asks for, and
        set the others aside; refuse a different setting. Returns (reused, set aside).

        `sources`: other folders of the same setting (e.g. seeds run in parallel processes) whose
        `results.json` rows are taken too, after this folder's own; they are only read.
        Under torchrun rank 0 reads and moves the rows, and the other ranks receive what it kept."""
        aside = self._take_previous(sources) if self.rank0 else []
        self.rows, self.manifest["split_hashes"], self.manifest["train_seconds"], n_aside = distributed.broadcast_object(
            (self.rows, self.manifest["split_hashes"], self.manifest["train_seconds"], len(aside)))
        return len(self.rows), n_aside

    def _take_previous(self, sources: Sequence[Path]) -> list[dict[str, Any]]:
        results = self._read_previous(self.path) or {"manifest": {}, "rows": []}
        set_aside = self._read_previous(self.out / SET_ASIDE) or {"manifest": {}, "rows": []}
        others = [self._read_previous(Path(source) / self.path.name, required=True) for source in sources]
        found: dict[str, dict[str, Any]] = {}
        for row in [r for res in (results, set_aside, *others) for r in res["rows"]]:  # results.json wins
            found.setdefault(row_identity(row), row)
        self.rows = self._ordered([row for key, row in found.items() if key in self._order])
        aside = [row for key, row in found.items() if key not in self._order]
        # split hashes and training times of every forget set and seed finished before
        known = {key: {k: v for res in (*reversed(others), set_aside, results) for k, v in res["manifest"].get(key, {}).items()}
                 for key in ("split_hashes", "train_seconds")}
        for key, values in known.items():
            self.manifest[key].update({k: v for k, v in values.items() if k in self._splits})
        if found:  # at each step every row is in results.json or the set-aside file
            newly = [row for row in aside if row not in set_aside["rows"]]
            if newly:
                self._write_set_aside(set_aside["rows"] + newly, known)
            self.save()
            self._write_set_aside(aside, known)
        return aside

    def _read_previous(self, path: Path, required: bool = False) -> Optional[dict[str, Any]]:
        if not path.exists():
            if required:
                raise UsageError(f"{path} does not exist; expected the results.json of a bench run of the same setting")
            return None
        try:
            previous = json.loads(path.read_text())
            rows, setting = previous["rows"], previous["manifest"]["setting_hash"]
            for row in rows:
                row_identity(row)  # has the fields a row has
                if "guard" in row and "guard_acted" not in row:  # its name in results files written before it was renamed
                    row["guard_acted"] = row.pop("guard")
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"{path} exists but is not an unlearnkit results file; choose another --out") from None
        if setting != self.manifest["setting_hash"]:
            raise UsageError(
                f"{path} holds results of a different setting (dataset, model, recipe or attack); "
                "choose another --out to keep both"
            )
        return previous

    def _write_set_aside(self, rows: list[dict[str, Any]], known: dict[str, dict]) -> None:
        path = self.out / SET_ASIDE
        if rows:
            note = "finished rows of earlier runs in this folder that the latest run did not ask for; a run asking for them reuses them"
            manifest = {"setting_hash": self.manifest["setting_hash"], "note": note, **known}
            atomic_write_text(path, json.dumps({"manifest": manifest, "rows": rows}, indent=1))
        else:
            path.unlink(missing_ok=True)

    def _ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: self._order[row_identity(r)])

    def add(self, row: dict[str, Any]) -> None:
        """Record a finished row in its place and save."""
        self.rows = self._ordered(self.rows + [row])
        self.save()

    def _results(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "rows": self.rows, "summary": report.summarize(self.rows),
                "comparisons": report.compare(self.rows), "across": report.across(self.rows)}

    def save(self) -> None:
        """Write `results.json` and `results.md`."""
        if not self.rank0:
            return
        results = self._results()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(results, indent=1))
        atomic_write_text(self.out / "results.md", report.markdown(results))

    def finish(self) -> dict[str, Any]:
        """Save, plot (`results.png`) and return the results."""
        results = self._results()
        if self.rank0:
            self.save()
            if not report.plot(results, self.out / "results.png"):  # no matplotlib, or nothing to plot
                (self.out / "results.png").unlink(missing_ok=True)  # an earlier run's plot would not show these results
        return results
