"""The study of one method: its Optuna study, objective, pruner, storage and workers.

A trial draws a config from the method's search space and runs it on every tuning cell and seed
through the bench (`unlearnkit.bench.runner.Bench.run_job`: the original and Retrain of each cell and
seed come from the model cache, trained once); its value is the mean (or worst) average gap to
Retrain over those runs. The first trial is the method's default (`enqueue_trial`), cut to the
budget where its length exceeds it, and is never pruned. A run that diverges fails its trial
(recorded, the study goes on); a hopeless trial is pruned after its first cell (`MedianPruner`).
A run that collapses (TA or RA more than 5 points below Retrain's) ends its trial there (pruned,
recorded as `collapsed`; the default runs on) and makes it infeasible: its constraint
(`Trial.set_constraint`) is the points by which its runs fell short, and TPE ranks every
infeasible trial below the feasible ones, so it learns to avoid collapse; the pruner's median is
taken over complete trials only, so collapsed configs never set the bar for sound ones.

The study lives in an RDB storage (by default SQLite in the output folder) with a heartbeat: a
trial whose worker died is failed once its heartbeat is stale and retried
(`RetryHeartbeatStaleTrialCallback`), and a trial is counted only if it finished, runs, waits,
or diverged; so any number of workers, killed and restarted at any moment, end with exactly N.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import attrs
import optuna

from unlearnkit.bench.grid import collapsed, shortfall
from unlearnkit.bench.plan import BenchSettings, Job, MethodSpec, paper_gamma, unlearner_class
from unlearnkit.bench.runner import Bench
from unlearnkit.core.errors import UnlearnkitError, UsageError
from unlearnkit.core.plugins import registry
from unlearnkit.core.registry import make_config
from unlearnkit.engine.evaluation import METRICS
from unlearnkit.tune.space import FRACTION, SearchSpace, cell_of, default_point, sample

STUDY_FILE = "study.db"
LOG_FILE = "tune.log"
HEARTBEAT_S = 10  # a worker says it is alive this often; silent for GRACE x as long, its trial is retried
GRACE = 3
MAX_RETRY = 3
COLLAPSE = "collapse"  # the trial's constraint: its runs' shortfall (`unlearnkit.bench.grid.shortfall`), feasible at 0
CRITERIA = {"mean": lambda v: sum(v) / len(v), "worst": max}


class Diverged(Exception):
    """A run of the trial diverged: the trial fails, recorded, and the study goes on."""


class Surplus(Exception):
    """The study already had N trials counted when this one started (another worker's came first)."""


@attrs.frozen
class TuneSettings:
    """What `unlearnkit tune` runs: the bench setting (cells and seeds), the methods and their γ."""

    bench: BenchSettings
    methods: tuple[str, ...]
    retain_access: Optional[float]  # None: each method's own γ
    trials: int
    criterion: str = "mean"
    fraction: float = FRACTION
    sampler_seed: int = 0

    def gamma(self, method: str) -> float:
        return self.retain_access or paper_gamma(method)

    def runs(self) -> list[tuple[str, int]]:
        """(forget, seed) of every run of a trial, cell by cell."""
        return [(forget, seed) for forget in self.bench.forget for seed in self.bench.seeds]


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether `trial` is one of the study's N: finished, running, waiting, or failed by divergence
    (not a dead worker's trial, which is retried, nor a surplus one)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING,
              optuna.trial.TrialState.WAITING)
    return trial.state in states or "diverged" in trial.user_attrs


def finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether `trial` is counted and done (complete, pruned or diverged)."""
    return counted(trial) and trial.state.is_finished()


def storage(url: Optional[str], out: Path, heartbeat: int = HEARTBEAT_S) -> optuna.storages.RDBStorage:
    """The RDB storage at `url` (default: SQLite in `out`), with a heartbeat and retries of dead workers' trials."""
    url = url or f"sqlite:///{(Path(out) / STUDY_FILE).resolve()}"
    if url.startswith(("journal:", "file:")) or url.endswith(".log"):
        raise UsageError(f"--storage {url!r}: Optuna's journal storage has no heartbeat, so a killed worker's trial could not be "
                         "retried; give an RDB URL (sqlite:///PATH, postgresql://..., mysql://...)")
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    callback = "heartbeat_stale_trial_callback" if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback") else "failed_trial_callback"
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=GRACE * heartbeat,
                                              **{callback: retry(max_retry=MAX_RETRY)})
        except (ImportError, ValueError, optuna.exceptions.StorageInternalError) as exc:
            raise UsageError(f"--storage {url!r}: {exc}") from None


class Tuner:
    """Tunes the methods of `settings` in `out`: one process's view (the main one, or a worker)."""

    def __init__(self, settings: TuneSettings, out: Path, *, storage_url: Optional[str] = None, device: str = "cpu",
                 heartbeat: int = HEARTBEAT_S, progress: bool = False, pruner: Optional[optuna.pruners.BasePruner] = None):
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is our own log line, not Optuna's traceback
        self.settings, self.out, self.device, self.progress = settings, Path(out), device, progress
        self.storage_url, self.heartbeat = storage_url, heartbeat
        self.pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=len(settings.bench.seeds) - 1)
        self.bench = Bench(settings.bench, self.out, device=device, progress=progress)
        self._storage: Optional[optuna.storages.RDBStorage] = None
        self._gold: dict[tuple[str, int], dict[str, Any]] = {}

    @property
    def storage(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            self._storage = storage(self.storage_url, self.out, self.heartbeat)
        return self._storage

    # -- references and spaces -------------------------------------------------------------
    def references(self) -> None:
        """Train (or load from the cache) the original and Retrain of every cell and seed; keep Retrain's metrics."""
        for forget, seed in self.settings.runs():
            if (forget, seed) not in self._gold:
                self._gold[(forget, seed)] = self.bench.run_job(Job("main", MethodSpec("retrain", "retrain"), forget, 1.0, seed))

    def space(self, method: str) -> SearchSpace:
        """The method's space on the tuning cells at its γ, around its default config."""
        gamma = self.settings.gamma(method)
        cells = tuple(cell_of(self.bench.task(forget, seed, gamma)) for forget, seed in self.settings.runs())
        return SearchSpace(make_config(registry.get("unlearner", method)), cells, self.settings.fraction)

    # -- the study -------------------------------------------------------------------------
    def study(self, method: str, worker: int = 0) -> optuna.Study:
        """The method's study (made, its default trial enqueued, when new); TPE seeded per worker."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.settings.sampler_seed + worker, constant_liar=True)
        study = optuna.create_study(study_name=method, storage=self.storage, sampler=sampler, pruner=self.pruner,
                                    direction="minimize", load_if_exists=True)
        if not study.get_trials(deepcopy=False):
            enqueue_default(study, *default_point(unlearner_class(method), self.space(method)))
        return study

    def objective(self, method: str, study: optuna.Study) -> Callable[[optuna.Trial], float]:
        """The trial's value: the criterion over its runs' average gaps; reported after each run for the pruner."""
        cls, space, gamma = unlearner_class(method), self.space(method), self.settings.gamma(method)
        criterion, n = CRITERIA[self.settings.criterion], self.settings.trials

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and counted(t)]
            if len(before) >= n:
                trial.set_user_attr("surplus", True)
                raise Surplus(f"trial {trial.number}: the study had {n} trials already")
            config = dict(trial.user_attrs["point"]) if trial.user_attrs.get("default") else sample(cls, trial, space)
            trial.set_user_attr("config", config)
            runs, gaps = [], []
            for step, (forget, seed) in enumerate(self.settings.runs()):
                row = self.bench.run_job(Job("main", MethodSpec(method, method, gamma, config), forget, gamma, seed))
                if "error" in row:
                    trial.set_user_attr("diverged", f"{forget}, seed {seed}: {row['error']}")
                    raise Diverged(row["error"])
                gold = self._gold[(forget, seed)]
                runs.append({"forget": forget, "seed": seed, "gap": row["gap"]["avg"], **{k: row[k] for k in METRICS if k in row},
                             "UT_s": row["UT_s"], "eval_s": row["eval_s"], "collapsed": collapsed(row, gold),
                             "shortfall": shortfall(row, gold)})
                gaps.append(row["gap"]["avg"])
                trial.set_user_attr("runs", runs)
                if runs[-1]["collapsed"] and not trial.user_attrs.get("default"):
                    trial.set_user_attr("collapsed", f"{forget}, seed {seed}")
                    trial.set_constraint(COLLAPSE, sum(r["shortfall"] for r in runs))
                    raise optuna.TrialPruned(f"collapsed on {forget}, seed {seed}")
                trial.report(criterion(gaps), step)
                if not trial.user_attrs.get("default") and trial.should_prune():
                    trial.set_constraint(COLLAPSE, 0.0)
                    raise optuna.TrialPruned(f"pruned after {len(gaps)} of {len(self.settings.runs())} runs")
            trial.set_constraint(COLLAPSE, sum(r["shortfall"] for r in runs))
            return criterion(gaps)

        return objective

    def work(self, method: str, *, worker: int = 0, on_trial: Optional[Callable[[optuna.trial.FrozenTrial], None]] = None) -> None:
        """Run trials of the method's study until N are counted and finished, then return. Waits for
        others' running trials (or their heartbeat to go stale, and their retry) before it ends."""
        import torch._dynamo  # noqa: F401  (a process's first optimiser step imports it, ~2 s: not in a trial's time)

        self.references()
        study = self.study(method, worker)
        objective = self.objective(method, study)
        log = self.out / LOG_FILE

        def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if trial.user_attrs.get("surplus"):
                return
            append_line(log, trial_line(method, trial, study, self.settings.trials))
            if on_trial is not None:
                on_trial(trial)

        while True:
            trials = study.get_trials(deepcopy=False)
            if sum(map(finished, trials)) >= self.settings.trials:
                return
            waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
            if not waiting and sum(map(counted, trials)) >= self.settings.trials:
                time.sleep(min(self.heartbeat, 2))  # others' trials run: wait for them, or for their heartbeat to go stale
                optuna.storages.fail_stale_trials(study)
                continue
            try:
                study.optimize(objective, n_trials=1, catch=(Diverged, Surplus), callbacks=[record], gc_after_trial=False)
            except ValueError as exc:  # another worker finished this trial first (a race on a loaded machine): it counts once
                if not str(exc).startswith("Cannot tell a"):
                    raise


def enqueue_default(study: optuna.Study, point: dict[str, Any], cut: dict[str, tuple[Any, Any]]) -> None:
    """Enqueue the default point as a trial that runs it as it is (`objective` takes the point, not
    a sample): a setting left to the method's rule (None) is no Optuna value."""
    fixed = {k: v for k, v in point.items() if v is not None}
    study.enqueue_trial(fixed, user_attrs={"default": True, "point": point, "cut": {k: list(v) for k, v in cut.items()}})


def trial_line(method: str, trial: optuna.trial.FrozenTrial, study: optuna.Study, n: int) -> str:
    """One line of the log for a finished trial: state, value, best so far, config, time, worker."""
    done = sum(map(finished, study.get_trials(deepcopy=False)))
    value = f"{trial.value:.3f}" if trial.value is not None else "-"
    if "collapsed" in trial.user_attrs:
        value = f"collapsed ({trial.user_attrs['collapsed']}) after {len(trial.user_attrs.get('runs', []))} runs"
    elif trial.state == optuna.trial.TrialState.PRUNED:
        value = f"pruned after {len(trial.user_attrs.get('runs', []))} runs"
    elif "diverged" in trial.user_attrs:
        value = f"diverged ({trial.user_attrs['diverged']})"
    complete = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    best = f"{min(complete):.3f}" if complete else "-"
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete and trial.datetime_start else 0.0
    default = " (default)" if trial.user_attrs.get("default") else ""
    return (f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {method} trial {trial.number}{default} [{done}/{n}]: {value}; best {best}; "
            f"{json.dumps(trial.user_attrs.get('config', trial.params), sort_keys=True)}; {seconds:.1f} s; {trial.user_attrs.get('worker', '')}")


def append_line(path: Path, line: str) -> None:
    """Append one line to `path` in a single write (whole lines from concurrent workers)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _worker(settings: TuneSettings, out: Path, storage_url: Optional[str], device: str, heartbeat: int,
            pruner: optuna.pruners.BasePruner, method: str, index: int) -> None:
    """A spawned worker process: one thread, trials of `method` until the study has N."""
    with one_thread():
        Tuner(settings, out, storage_url=storage_url, device=device, heartbeat=heartbeat, pruner=pruner).work(method, worker=index)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op pool and the BLAS/OpenMP pools numpy and scikit-learn use (the attack) at one thread."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def tune_method(tuner: Tuner, method: str, *, workers: int = 1, on_trial: Optional[Callable[[optuna.trial.FrozenTrial], None]] = None,
                poll_s: float = 1.0) -> None:
    """Tune `method` to N trials with `workers` processes of one thread each (1: this process).

    The references are trained and the study made here first, so workers find them in the
    cache and the default trial is enqueued once; `on_trial` sees every trial as it finishes."""
    import multiprocessing

    tuner.references()
    study = tuner.study(method)  # made here, so the default trial is enqueued once
    if workers == 1:
        with one_thread():
            tuner.work(method, on_trial=on_trial)
        return
    context = multiprocessing.get_context("spawn")
    args = (tuner.settings, tuner.out, tuner.storage_url, tuner.device, tuner.heartbeat, tuner.pruner, method)
    processes = [context.Process(target=_worker, args=(*args, i), daemon=True) for i in range(workers)]
    for p in processes:
        p.start()
    seen = {t.number for t in study.get_trials(deepcopy=False) if finished(t)}  # finished before this run
    try:
        while True:
            alive = any(p.is_alive() for p in processes)
            for trial in study.get_trials(deepcopy=False):
                if finished(trial) and trial.number not in seen:
                    seen.add(trial.number)
                    if on_trial is not None:
                        on_trial(trial)
            if not alive:
                break
            time.sleep(poll_s)
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
            p.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise UnlearnkitError(f"{len(failed)} of {workers} tuning workers of {method} failed (exit status {failed[0]}); "
                              f"see {tuner.out / LOG_FILE}, and run the command again to continue")
