"""The bench's `sequential` table: deletion requests that arrive one after another.

`REQUESTS` requests of `REQUEST_RATIO` of the training set each, drawn by the seed without
overlap. For request k every method unlearns the union of requests 1..k from its own output for
request k − 1 (the original model for k = 1), as `unlearnkit unlearn` does on an unlearned
checkpoint; Retrain is trained from scratch without the union; each row holds the metrics after
request k and their gap to that Retrain.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from unlearnkit.core.errors import DivergenceError
from unlearnkit.core.registry import get_unlearner
from unlearnkit.data.tasks import ForgetSpec
from unlearnkit.engine.evaluation import evaluate, gap

REQUESTS = 5
REQUEST_RATIO = 0.02
REQUEST_SPEC = f"random:{REQUEST_RATIO}"  # how each request is drawn; the rows' `forget`


def forget_sets(train_indices: torch.Tensor, seed: int) -> list[tuple[int, ...]]:
    """The forget set after each request: the union of disjoint seeded draws from the train split."""
    g = torch.Generator().manual_seed(seed)
    order = train_indices[torch.randperm(len(train_indices), generator=g)]
    size = max(1, round(REQUEST_RATIO * len(train_indices)))
    return [tuple(sorted(order[: k * size].tolist())) for k in range(1, REQUESTS + 1)]


def run_job(bench: Any, job: Any) -> dict[str, Any]:
    """One row: `job.spec`'s model after request `job.request`, against Retrain on the union so far."""
    seed, k = job.seed, job.request
    sets = forget_sets(bench.task(REQUEST_SPEC, seed).train.indices, seed)
    task = bench.task(ForgetSpec("indices", sets[k - 1]), seed, job.retain_access)
    gold, gold_seconds, gold_metrics = _gold(bench, sets, seed, k)
    head = {**bench._row_head(job), "request": k, "forgotten": len(task.forget)}
    run_info: dict[str, Any] = {}
    if job.spec.name == "original":
        model, seconds = bench.original(task, seed)[0], 0.0
    elif job.spec.name == "retrain":
        model, seconds = gold, gold_seconds
    else:
        try:
            model, seconds, run_info = _chain(bench, job, sets)
        except DivergenceError as exc:  # a result too: this request and the later ones of the method fail
            return {**head, "error": str(exc)}
    start = time.perf_counter()
    metrics = dict(gold_metrics) if model is gold else evaluate(model, task, bench.settings.attack, seed=seed, device=bench.device)
    return {**head, **metrics, "UT_s": seconds, "gap": gap(metrics, gold_metrics), "eval_s": time.perf_counter() - start, **run_info}


def _gold(bench: Any, sets: list[tuple[int, ...]], seed: int, k: int) -> tuple:
    key = ("retrain", seed, k)
    if key not in bench.chains:
        task = bench.task(ForgetSpec("indices", sets[k - 1]), seed)
        gold, seconds = bench.gold(task, seed)
        bench.chains[key] = (gold, seconds, evaluate(gold, task, bench.settings.attack, seed=seed, device=bench.device))
    return bench.chains[key]


def _chain(bench: Any, job: Any, sets: list[tuple[int, ...]]) -> tuple[torch.nn.Module, float, dict[str, Any]]:
    """The method's model after request `job.request`, continuing its chain (recomputed from the
    original when the bench resumes, deterministically), and the seconds and `run_info` of the last request."""
    key = (job.spec.label, job.seed)
    done, model = bench.chains.get(key, (0, None))
    if isinstance(model, DivergenceError):
        raise DivergenceError(f"request {done} failed earlier: {model}")
    if done >= job.request or model is None:
        done, model = 0, bench.original(bench.task(REQUEST_SPEC, job.seed), job.seed)[0]
    seconds, unlearner = 0.0, None
    for k in range(done + 1, job.request + 1):
        task = bench.task(ForgetSpec("indices", sets[k - 1]), job.seed, job.retain_access)
        unlearner = get_unlearner(job.spec.name, job.spec.config)
        start = time.perf_counter()
        try:
            model = unlearner.unlearn(model, task, seed=job.seed, device=bench.device, progress=bench.progress)
        except DivergenceError as exc:
            bench.chains[key] = (k, exc)
            raise
        seconds = time.perf_counter() - start
    bench.chains[key] = (job.request, model)
    return model, seconds, dict(getattr(unlearner, "run_info", {}) or {})


def markdown(summary: list[dict[str, Any]]) -> list[str]:
    """The table's lines: each method's average gap to Retrain after each request."""
    entries = [e for e in summary if e["table"] == "sequential"]
    requests = sorted({int(e["setting"].rsplit(" ", 1)[1]) for e in entries})
    methods = list(dict.fromkeys((e["method"], e["retain_access"]) for e in entries))
    lines = ["", f"## Sequential deletion requests: {len(requests)} × `{REQUEST_SPEC}`, average gap to Retrain after each", "",
             "| method | γ | " + " | ".join(f"after {k}" for k in requests) + " | UT (s) per request |",
             "|---|---|" + "---|" * len(requests) + "---|"]
    for method, gamma in methods:
        cells, times = [], []
        for k in requests:
            e = next((e for e in entries if e["method"] == method and e["retain_access"] == gamma and e["setting"].endswith(f" {k}")), None)
            avg = (e or {}).get("gap", {}).get("avg")
            if avg is None:
                cells.append("failed" if e and e.get("failed") else "–")
                continue
            cells.append(f"{avg['mean']:.2f}" + (f"±{avg['std']:.2f}" if e["n_seeds"] > 1 else ""))
            if "UT_s" in e:
                times.append(e["UT_s"]["mean"])
        ut = f"{sum(times) / len(times):.1f}" if times else "–"
        lines.append(f"| {method} | {gamma:g} | " + " | ".join(cells) + f" | {ut} |")
    return lines
