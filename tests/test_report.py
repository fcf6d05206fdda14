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


METHODS = ["amnesiac", "badt", "example-head-reset", "fisher", "ft", "ga", "l1-sparse", "ltu", "neggrad-plus", "randl",
           "salun", "scrub", "sfron", "ssd", "ltu-calibrated", "ft-long"]


def _bench_like(settings=("random:0.1",)):
    """original, retrain and 16 methods; salun returned the original model (`unchanged`)."""
    rows = []
    for setting in settings:
        for i, method in enumerate(["original", "retrain", *METHODS]):
            gap = {"UA": 0.0, "RA": 0.0, "TA": 0.0, "MIA": 0.0} if method == "retrain" else \
                  {"UA": 8.0 if method in ("original", "salun") else 0.5 * i, "RA": 0.2 * i, "TA": 1.8, "MIA": 18.0 - i}
            gap["avg"] = sum(gap.values()) / 4
            rows.append({"table": "main", "method": method, "name": method, "forget": setting, "retain_access": 1.0, "seed": 0,
                         "UA": 5.0, "RA": 99.0, "TA": 90.0, "MIA": 20.0, "UT_s": 0.1 * i, "gap": gap,
                         **({"unchanged": True} if method == "salun" else {})})
    return {"summary": report.summarize(rows)}


def test_the_plot_gives_every_method_a_distinct_labelled_mark_and_the_references():
    import matplotlib.pyplot as plt

    fig = report.figure(_bench_like())
    try:
        panels = fig.axes
        assert len(panels) == 5  # UA, RA, TA, MIA and the time
        ticks = [t.get_text().rsplit("  ", 1) for t in panels[0].get_yticklabels()]  # name  average gap
        labels, averages = [name for name, _ in ticks], [float(avg) for _, avg in ticks]
        assert labels[0] == "retrain (reference)" and "original (reference)" in labels and averages == sorted(averages)
        assert "salun (= original)" in labels
        assert {label.split(" (")[0] for label in labels} == {"original", "retrain", *METHODS}
        marks = {}
        for ax in panels[:4]:
            for coll in ax.collections:
                if coll.get_label() in marks or not coll.get_offsets().size:
                    continue
                colour = tuple(coll.get_edgecolor()[0])
                marks[coll.get_label()] = (colour, coll.get_paths()[0].vertices.round(3).tobytes())
        assert set(marks) == {"original", "retrain", *METHODS}  # each method has its mark in the metric panels
        assert len(set(marks.values())) == len(marks)  # no two methods share a colour and marker
        (salun,) = [c for c in panels[0].collections if c.get_label() == "salun"]
        assert salun.get_facecolor().size == 0 or salun.get_facecolor()[0][3] == 0  # hollow: returned the original
        for ax in panels:
            assert ax.get_xlim()[0] == 0
        assert "time (s)" in panels[4].get_xlabel()
        dashed = [line for line in panels[0].get_lines() if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in dashed] == [8.0]  # the original's UA gap
    finally:
        plt.close(fig)


def test_the_plot_marks_come_from_distinct_colour_and_marker_pairs():
    style = report.marks(["original", "retrain", *(f"m{i}" for i in range(40))])
    assert len(set(map(str, style.values()))) == len(style) == 42
