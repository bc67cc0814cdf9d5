"""Running suites: the job function, executors and the driver loop.

``run_job(job)`` is a plain, picklable function of a job dict (as made by
:meth:`seqbench.suite.Suite.jobs`); it never raises for a model or task failure,
it returns a record with a status instead:

* ``ok``: fitted and scored;
* ``skipped``: the model's tags do not cover the task's data (the reason is the error);
* ``diverged``: training produced a NaN or infinite loss;
* ``failed``: anything else raised (the error text and the last traceback lines are kept);
* ``timeout``: set by executors that enforce a per-job time limit.

Every model with a ``random_state`` parameter left at ``None`` gets the job's seed,
which also seeds the task's data, so one seed fixes everything a job draws.

The driver (:func:`run_suite`) is the only writer to the store: it skips jobs already
stored, runs the rest through an executor and writes each record as it arrives, in
its own transaction, so an interrupted suite keeps every finished job.
"""

from __future__ import annotations

import datetime as _dt
import resource
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import registry
from .errors import DivergedError, IncompatibleError, SeqbenchError
from .evaluate import evaluate
from .provenance import device_name, provenance
from .store import REDO_ON_RETRY, Store
from .suite import Suite, canonical_hash

JOB_KEYS = ("hash", "suite", "task", "task_label", "task_version", "task_params", "task_sweep",
            "model", "model_label", "model_version", "model_params", "model_sweep", "seed", "data")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _peak_mem_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def failure_text(exc: BaseException) -> str:
    """One line naming the error, then the last lines of its traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-3:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def base_record(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in JOB_KEYS}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job: sample the task's splits, fit the model, score it on the test split."""
    record = base_record(job)
    record["started"] = _now()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        task_cls = registry.tasks.get(job["task"])
        task = task_cls(**job["task_params"])
        spec = task.spec()
        record.update(metric=spec.metric, higher_is_better=spec.higher_is_better,
                      chance=spec.chance, oracle=spec.oracle)
        data = job["data"]
        train, valid, test = task.splits(job["seed"], data["n_train"], data["n_valid"],
                                         data["n_test"])
        model_cls = registry.models.get(job["model"])
        params = dict(job["model_params"])
        if "random_state" in params and params["random_state"] is None:
            params["random_state"] = job["seed"]
        model = model_cls(**params)
        why = model.incompatibility(train, spec.shape)
        if why:
            raise IncompatibleError(why)
        fit0 = time.perf_counter()
        model.fit(train, valid, shape=spec.shape)
        record["fit_s"] = time.perf_counter() - fit0
        result = evaluate(model, task, test)
        record.update({k: result[k] for k in ("score", "normalised", "metrics", "slices")})
        record["oracle"] = result["oracle"]
        record["curve"] = model.training_curve()
        record["diagnostics"] = model.diagnostics(test)
        record["n_params"] = model.n_parameters()
        record["device"] = device_name(getattr(model, "device_", None))
        record["status"] = "ok"
    except IncompatibleError as exc:
        record.update(status="skipped", error=str(exc))
    except DivergedError as exc:
        record.update(status="diverged", error=str(exc))
    except Exception as exc:  # a failing job must not take the suite down
        record.update(status="failed", error=failure_text(exc))
    record["wall_s"] = time.perf_counter() - wall0
    record["cpu_s"] = time.process_time() - cpu0
    record["peak_mem_mb"] = _peak_mem_mb()
    record["finished"] = _now()
    record.setdefault("device", device_name(None))
    record["provenance"] = provenance()
    return record


class InlineExecutor:
    """Runs jobs one after another in the driver process (for debugging)."""

    name = "inline"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                yield run_job(job)
        finally:
            torch.set_num_threads(previous)


def select_jobs(
    jobs: list[dict[str, Any]], store: Store, *, force: bool = False, retry_failed: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``jobs`` into (to run, already done) given what ``store`` holds."""
    stored = store.statuses()
    todo, done = [], []
    seen = set()
    for job in jobs:
        if job["hash"] in seen:  # the same job listed twice in one suite runs once
            continue
        seen.add(job["hash"])
        status = stored.get(job["hash"])
        if force or status is None or (retry_failed and status in REDO_ON_RETRY):
            todo.append(job)
        else:
            done.append(job)
    return todo, done


def describe_job(job: dict[str, Any]) -> str:
    def fmt(d):
        return ",".join(f"{k}={v}" for k, v in d.items())

    t = job["task_label"] + (f"({fmt(job['task_sweep'])})" if job["task_sweep"] else "")
    m = job["model_label"] + (f"({fmt(job['model_sweep'])})" if job["model_sweep"] else "")
    return f"{m} on {t} seed {job['seed']}"


def run_suite(
    suite: Suite,
    store: Store,
    executor=None,
    *,
    force: bool = False,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run every job of ``suite`` not yet in ``store``; return a summary of counts."""
    jobs = suite.jobs()
    todo, done = select_jobs(jobs, store, force=force, retry_failed=retry_failed)
    store.write_suite(suite.name, suite.path, suite.text, canonical_hash(suite.text), _now())
    executor = executor or InlineExecutor()
    say = log or (lambda _msg: None)
    say(f"suite {suite.name}: {len(jobs)} jobs, {len(done)} already in the store, "
        f"{len(todo)} to run ({executor.name})")
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    for i, record in enumerate(_records(executor, todo), 1):
        store.write(record)
        counts[record["status"]] += 1
        score = record.get("score")
        what = (f"{record['metric']}={score:.4g}" if score is not None
                else (record.get("error") or "").splitlines()[0][:120])
        say(f"[{i}/{len(todo)}] {describe_job(record)}: {record['status']} {what} "
            f"({record['wall_s']:.1f} s)")
    summary = {"jobs": len(jobs), "already_done": len(done), "ran": len(todo),
               "wall_s": time.perf_counter() - t0, **{s: counts[s] for s in counts}}
    return summary


def _records(executor, jobs: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    if not jobs:
        return []
    return executor.run(jobs)


def make_executor(spec: str, jobs: int | None = None, threads: int = 1):
    """An executor from its CLI name (``inline`` for now)."""
    if spec == "inline":
        return InlineExecutor(threads=threads)
    raise SeqbenchError(f"unknown executor {spec!r}; accepted: inline")
