"""The trade-off plot: nothing is cut off at the edges, and it is written like any other file."""

import os
import stat

import pytest

from unlearnkit.bench import report

pytest.importorskip("matplotlib")


def _results(settings):
    rows = []
    for setting in settings:
        for i, method in enumerate(["amnesiac", "example-head-reset", "ltu", "salun"]):
            gap = {"UA": 1.0 + i, "RA": 0.5, "TA": 2.0, "MIA": 3.0 * i, "avg": 1.5}
            rows.append({"table": "main", "method": method, "name": method, "forget": setting, "retain_access": 1.0,
                         "seed": 0, "UA": 5.0, "RA": 99.0, "TA": 90.0, "MIA": 20.0, "UT_s": 1.0 + i, "gap": gap})
    return {"summary": report.summarize(rows)}


@pytest.mark.parametrize("settings", [["random:0.1"], ["random:0.1", "random:0.5"]])
def test_no_text_of_the_plot_is_cut_off(settings, tmp_path):
    import matplotlib.image

    assert report.plot(_results(settings), tmp_path / "results.png")
    pixels = matplotlib.image.imread(tmp_path / "results.png")[..., :3]
    border = [pixels[:3], pixels[-3:], pixels[:, :3], pixels[:, -3:]]  # text cut by an edge leaves ink on it
    assert all((edge > 0.95).all() for edge in border)


def test_plot_writes_a_png_with_the_mode_of_a_plain_write(tmp_path):
    previous = os.umask(0o022)
    try:
        assert report.plot(_results(["random:0.1"]), tmp_path / "results.png")
    finally:
        os.umask(previous)
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE((tmp_path / "results.png").stat().st_mode) == 0o644 and [p.name for p in tmp_path.iterdir()] == ["results.png"]
