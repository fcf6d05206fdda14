"""Unlearning tasks: how a dataset is split, what each forget spec selects, the errors a bad
spec or setting gives, and the read-only view a method receives."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.core.interfaces import TASK_PARTS
from unlearnkit.data.tasks import FORGET_KINDS, ForgetSpec, make_task, parse_forget, read_index_file

N_SOURCE = 320  # the synthetic dataset's train split: 80% of 400 samples


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))


def source():
    return make_task("synthetic", forget="random:0.1", seed=0)  # for the source arrays


def ids(data) -> list[int]:
    return data.indices.tolist()


# -- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("forget, gamma, seed", [("random:0.1", 0.3, 0), ("random:0.5", 0.1, 1), ("class:2", 1.0, 7), ("random:0.37", 0.77, 3)])
def test_splits_are_disjoint_and_cover_the_source(forget, gamma, seed):
    task = make_task("synthetic", forget=forget, retain_access=gamma, seed=seed)
    train, val, f, r_full, r = map(set, (ids(task.train), ids(task.val), ids(task.forget), ids(task.retain_full), ids(task.retain)))
    assert train | val == set(range(N_SOURCE)) and not train & val
    assert len(val) == round(0.1 * N_SOURCE)
    assert f | r_full == train and not f & r_full
    assert r <= r_full and len(r) == max(1, round(gamma * len(r_full)))
    assert len(ids(task.forget)) == len(f)  # no sample twice
    # every part holds the source's own rows for its indices
    full = torch.cat([task.train.x, task.val.x])[torch.argsort(torch.cat([task.train.indices, task.val.indices]))]
    labels = torch.cat([task.train.y, task.val.y])[torch.argsort(torch.cat([task.train.indices, task.val.indices]))]
    for part in (task.forget, task.retain_full, task.retain, task.val):
        assert torch.equal(part.x, full[part.indices]) and torch.equal(part.y, labels[part.indices])
    assert len(task.test) == 80 and task.describe()["forget"] == str(parse_forget(forget))


def test_random_forget_takes_the_ratio_of_train():
    task = make_task("synthetic", forget="random:0.25", seed=0)
    assert len(task.forget) == round(0.25 * len(task.train))


def test_same_seed_same_task_other_seed_other_task():
    a, b, c = (make_task("synthetic", forget="random:0.2", retain_access=0.3, seed=s) for s in (4, 4, 5))
    for part in ("train", "val", "forget", "retain"):
        assert ids(getattr(a, part)) == ids(getattr(b, part))
    assert a.split_hashes() == b.split_hashes()
    assert ids(a.val) != ids(c.val) and ids(a.forget) != ids(c.forget) and ids(a.retain) != ids(c.retain)
    assert a.split_hashes()["forget"] != c.split_hashes()["forget"]


def test_full_retain_access_gives_all_of_retain():
    task = make_task("synthetic", retain_access=1.0)
    assert ids(task.retain) == ids(task.retain_full)


@pytest.mark.parametrize("k", [0, 3])
def test_class_forget_takes_exactly_that_class(k):
    task = make_task("synthetic", forget=f"class:{k}", seed=2)
    assert len(task.forget) == int((task.train.y == k).sum()) > 0
    assert (task.forget.y == k).all() and not (task.retain_full.y == k).any()


def test_index_file_takes_exactly_those_source_indices(tmp_path):
    val = set(ids(make_task("synthetic", seed=1).val))  # the val split depends only on the seed
    wanted = [i for i in range(0, N_SOURCE, 7) if i not in val][:20]
    path = tmp_path / "forget.txt"
    path.write_text("# samples to forget\n" + ", ".join(map(str, wanted[:10])) + "\n" + "\n".join(map(str, wanted[10:])) + "  # the rest\n")
    task = make_task("synthetic", forget=f"indices:{path}", seed=1)
    assert ids(task.forget) == sorted(wanted)
    assert not set(wanted) & set(ids(task.retain_full))
    assert read_index_file(path).tolist() == wanted


# -- errors ---------------------------------------------------------------------------------


def _index_file(tmp_path, text: str) -> str:
    path = tmp_path / "idx.txt"
    path.write_text(text)
    return f"indices:{path}"


def _val_index() -> int:
    return ids(make_task("synthetic", seed=0).val)[0]


def _train_indices() -> list[int]:
    return ids(make_task("synthetic", seed=0).train)


BAD_FORGET = [
    # (spec or a function of tmp_path giving it, text the message must hold)
    ("random:0", "random:0"), ("random:1", "random:1"), ("random:-0.1", "-0.1"), ("random:1.5", "1.5"),
    ("random:abc", "'abc'"), ("random:nan", "nan"), ("random:inf", "inf"), ("random:", "''"),
    ("random:0.001", "empty"),  # rounds to no sample
    ("random:0.9999", "whole training set"),  # rounds to every sample
    ("rand:0.1", "'rand'"), ("forget-all", "'forget-all'"), ("", "''"), (":0.1", "unknown kind ''"),
    ("class:4", "class 4 does not exist"), ("class:-1", "'-1'"), ("class:x", "'x'"), ("class:1.0", "'1.0'"),
    ("class:" + "9" * 5000, "does not exist"),
    ("indices:", "needs a file name"),
    (lambda p: f"indices:{p / 'nope.txt'}", "nope.txt' not found"),
    (lambda p: f"indices:{p}", "unreadable"),  # a directory
    (lambda p: _index_file(p, "3 320"), "index 320 is out of range"),
    (lambda p: _index_file(p, "3 99999999999999999999999"), "index 99999999999999999999999 is out of range"),
    (lambda p: _index_file(p, "3 -4"), "'-4' is not a non-negative integer"),
    (lambda p: _index_file(p, "3, five"), "'five' is not a non-negative integer"),
    (lambda p: _index_file(p, "3 2.5"), "'2.5'"),
    (lambda p: _index_file(p, f"{_train_indices()[0]} 5 {_train_indices()[0]}"), f"index {_train_indices()[0]} appears more than once"),
    (lambda p: _index_file(p, f"{_val_index()}"), f"index {_val_index()} is in the held-out validation split"),
    (lambda p: _index_file(p, "# nothing here\n"), "empty"),
    (lambda p: _index_file(p, " ".join(map(str, _train_indices()))), "whole training set"),
]


@pytest.mark.parametrize("spec, message", BAD_FORGET)
def test_bad_forget_specs_are_usage_errors_naming_the_value(spec, message, tmp_path):
    spec = spec(tmp_path) if callable(spec) else spec
    with pytest.raises(uk.UsageError) as info:
        make_task("synthetic", forget=spec, seed=0)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_index_file_that_is_not_text_is_a_usage_error(tmp_path):
    path = tmp_path / "idx.bin"
    path.write_bytes(b"\xff\xfe\x00\x80")
    with pytest.raises(uk.UsageError, match="unreadable"):
        read_index_file(path)


@pytest.mark.parametrize("gamma", [0, 1.5, -1, float("nan"), float("inf"), "0.5", True, None])
def test_retain_access_outside_0_1_is_refused(gamma):
    with pytest.raises(uk.UsageError, match="retain_access must be in \\(0, 1\\]") as info:
        make_task("synthetic", retain_access=gamma)
    assert repr(gamma) in str(info.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None, 2**63, 2**70])
def test_malformed_seed_is_refused(seed):
    with pytest.raises(uk.UsageError, match="seed must be") as info:
        make_task("synthetic", seed=seed)
    assert repr(seed) in str(info.value)


@pytest.mark.parametrize("val_ratio", [0, 1, -0.5, float("nan"), "0.1", True])
def test_malformed_val_ratio_is_refused(val_ratio):
    with pytest.raises(uk.UsageError, match="val_ratio"):
        make_task("synthetic", val_ratio=val_ratio)


def test_largest_seed_works():
    assert len(make_task("synthetic", seed=2**63 - 1).forget) > 0


def test_a_class_absent_from_train_gives_an_empty_forget_set(register_component):
    from unlearnkit.data import datasets as ukdata

    def no_class_3(config, data_dir, download=False):
        bundle = ukdata.synthetic(config, data_dir, download)
        keep = (bundle.train.y != 3).nonzero().squeeze(1)
        return ukdata.DatasetBundle(bundle.train.subset(keep), bundle.test, 4, bundle.input_shape, bundle.recipe)

    register_component("dataset", "synthetic-no-3", no_class_3, ukdata.SyntheticConfig)
    with pytest.raises(uk.UsageError, match="class:3: the forget set is empty"):
        make_task("synthetic-no-3", forget="class:3")


# -- parse_forget ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind, value", [
    ("random:0.1", "random", 0.1), ("random: 1e-1 ", "random", 0.1), ("class:3", "class", 3), ("class: 007", "class", 7),
    ("indices:a:b.txt", "indices", "a:b.txt"),
])
def test_parse_forget_accepts_good_specs(text, kind, value):
    spec = parse_forget(text)
    assert (spec.kind, spec.value) == (kind, value)
    assert parse_forget(str(spec)) == spec and parse_forget(spec) is spec


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(
    st.text(),
    st.builds("{}:{}".format, st.sampled_from(FORGET_KINDS + ("", "Random", "class ")), st.text()),
    st.builds("{}:{}".format, st.sampled_from(("random", "class")), st.text(alphabet="0123456789.-+eE _naif", max_size=60)),
    st.builds("{}:{}".format, st.sampled_from(("random", "class")), st.integers(1, 6000).map("9".__mul__)),  # past int()'s digit limit
    st.builds("random:{}".format, st.floats(allow_nan=True, allow_infinity=True)),
    st.integers(), st.none(), st.binary(),
))
def test_parse_forget_fuzz_raises_only_usage_errors(text):
    try:
        spec = parse_forget(text)
    except uk.UsageError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert isinstance(spec, ForgetSpec) and spec.kind in FORGET_KINDS
    if spec.kind == "random":
        assert 0 < spec.value < 1 and math.isfinite(spec.value)
    elif spec.kind == "class":
        assert isinstance(spec.value, int) and spec.value >= 0
    assert parse_forget(str(spec)) == spec


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(), st.text(alphabet="0123456789 ,#\n-x", max_size=200)))
def test_index_file_fuzz_raises_only_usage_errors(tmp_path, text):
    path = tmp_path / "fuzz.txt"
    path.write_text(text, errors="surrogatepass")
    try:
        indices = read_index_file(path)
    except uk.UsageError:
        return
    assert indices.dtype == torch.long and (indices >= 0).all()


# -- the view a method gets -----------------------------------------------------------------


def test_view_exposes_only_declared_parts_and_records_reads():
    task = make_task("synthetic", seed=0)
    view = task.view({"forget", "retain"}, who="my-method")
    assert view.accessed == set()
    assert view.forget is task.forget and view.accessed == {"forget"}
    for part in ("retain_full", "train", "val", "test"):
        with pytest.raises(uk.DataAccessError) as info:
            getattr(view, part)
        assert "my-method" in str(info.value) and f"task.{part}" in str(info.value)
    assert view.accessed == {"forget"}  # refused reads are not reads
    view.retain
    assert view.accessed == {"forget", "retain"}


def test_view_never_exposes_test():
    task = make_task("synthetic", seed=0)
    view = task.view(TASK_PARTS)
    assert all(getattr(view, p) is getattr(task, p) for p in TASK_PARTS)
    with pytest.raises(uk.DataAccessError):
        view.test
    with pytest.raises(uk.UsageError, match="unknown task parts \\['test'\\]"):
        task.view({"forget", "test"})


def test_view_metadata_is_readable_and_not_a_data_read():
    task = make_task("synthetic", forget="class:1", retain_access=0.5, seed=3)
    view = task.view(set())
    assert (view.num_classes, view.input_shape, view.seed, view.retain_access) == (4, (16,), 3, 0.5)
    assert view.forget_spec == ForgetSpec("class", 1) and view.dataset == "synthetic"
    assert view.recipe is task.recipe and view.describe()["forget"] == "class:1"
    assert view.accessed == set()
    with pytest.raises(AttributeError, match="no attribute 'secret'"):
        view.secret


def test_view_is_read_only():
    task = make_task("synthetic", seed=0)
    view = task.view({"forget"})
    for name in ("forget", "test", "reads", "num_classes"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(view, name, None)
    assert view.reads == frozenset({"forget"})
