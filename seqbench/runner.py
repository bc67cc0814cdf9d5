"""Running suites: the job function, executors and the driver loop.

``run_job(job)`` is a plain, picklable function of a job dict (as made by
:meth:`seqbench.suite.Suite.jobs`); it never raises for a model or task failure,
it returns a record with a status instead:

* ``ok``: fitted and scored;
* ``skipped``: the model's tags do not cover the task's data (the reason is the error);
* ``diverged``: training produced a NaN or infinite loss;
* ``failed``: anything else raised (the error text and the last traceback lines are kept);
* ``timeout``: the job ran past its time limit (``job["timeout"]`` seconds, from the
  suite's ``[budget] timeout`` or ``--timeout``) and was stopped.

Every model with a ``random_state`` parameter left at ``None`` gets the job's seed,
which also seeds the task's data, so one seed fixes everything a job draws.

The driver (:func:`run_suite`) is the only writer to the store: it skips jobs already
stored, runs the rest through an executor and writes each record as it arrives, in
its own transaction, so an interrupted suite keeps every finished job.

The executors (``inline`` here; ``local`` worker processes and Dask in
:mod:`seqbench.executors`) all run this same function and only return records.

``peak_mem_mb`` is the peak resident set size of the process that ran the job, during
that job: on Linux the kernel's high-water mark is reset at the start of the job
(``/proc/self/clear_refs``) and read at its end (``VmHWM``). It is the whole process: the
interpreter and the imported libraries (a few hundred MiB with torch), and whatever a
persistent worker still holds from its earlier jobs (memory Python, the allocator or
torch kept for reuse), so the same job can read higher after others. What the job itself
added is ``provenance.peak_growth_mb``, the peak above the RSS at the job's start
(``provenance.rss_start_mb``). Where the high-water mark cannot be reset, RSS is sampled
every 10 ms with psutil; failing that, it is ``ru_maxrss`` (the process's peak so far,
which over-states later jobs of a persistent worker; no growth is recorded then). Torch jobs on CUDA
also record ``cuda_peak_mem_mb`` (``torch.cuda.max_memory_allocated``, reset per job)
in the provenance.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import re
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import heap, registry
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


def proc_status_kb(field: str) -> int | None:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``, ``VmHWM``, ...); None where there
    is no such file or field (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakMemory:
    """Peak resident set size of this process during a ``with`` block, in MiB.

    Methods, best first: reset the kernel's high-water mark (``/proc/self/clear_refs``)
    and read ``VmHWM`` at the end; sample RSS with psutil every ``interval`` seconds;
    ``ru_maxrss`` (peak since the process started). ``method`` says which was used.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.method = "maxrss"
        self.peak_mb: float | None = None
        #: RSS at the start of the block (MiB), where it can be read
        self.start_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _hwm_mb() -> float | None:
        kb = proc_status_kb("VmHWM")
        return None if kb is None else kb / 1024

    @property
    def growth_mb(self) -> float | None:
        """The peak above the RSS at the start (what the block itself added), where both
        are known."""
        if self.peak_mb is None or self.start_mb is None or self.method == "maxrss":
            return None
        return max(0.0, self.peak_mb - self.start_mb)

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
            if self._hwm_mb() is not None:
                self.method = "vmhwm"
                rss = proc_status_kb("VmRSS")
                self.start_mb = None if rss is None else rss / 1024
                return self
        except OSError:
            pass
        try:
            import psutil
        except ImportError:
            return self
        proc = psutil.Process()
        self.method = "psutil"
        self._sampled = proc.memory_info().rss
        self.start_mb = self._sampled / 2**20

        def sample():
            while not self._stop.wait(self.interval):
                self._sampled = max(self._sampled, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "vmhwm":
            self.peak_mb = self._hwm_mb()
        elif self.method == "psutil":
            self._stop.set()
            self._thread.join()
            import psutil

            self.peak_mb = max(self._sampled, psutil.Process().memory_info().rss) / 2**20
        else:
            self.peak_mb = _peak_mem_mb()


def _cuda_reset() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def _cuda_peak_mb() -> float | None:
    """``max_memory_allocated`` over the CUDA devices this process used, in MiB."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**20


def failure_text(exc: BaseException) -> str:
    """One line naming the error, then the last lines of its traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-3:]).strip()
    what = str(exc) or {"MemoryError": "out of memory"}.get(type(exc).__name__, "(no message)")
    return f"{type(exc).__name__}: {what}\n{tail}"


def base_record(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job.get(k) for k in JOB_KEYS}


def measured(body: Callable[[], None]) -> dict[str, Any]:
    """Run ``body()`` and return what a record says of its run: ``started``, ``finished``,
    ``wall_s``, ``cpu_s``, ``peak_mem_mb`` (:class:`PeakMemory`) and ``provenance`` (with
    ``peak_mem_method``, ``rss_start_mb`` and ``peak_growth_mb`` where known, and
    ``cuda_peak_mem_mb`` where CUDA ran). The process keeps freed C heap blocks for reuse
    during the job and gives its free memory back after it (:mod:`seqbench.heap`)."""
    started = _now()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    heap.keep_freed_blocks()
    memory = PeakMemory()
    _cuda_reset()
    try:
        with memory:
            body()
    finally:
        heap.release_free_memory()
    out = {"started": started, "wall_s": time.perf_counter() - wall0,
           "cpu_s": time.process_time() - cpu0, "peak_mem_mb": memory.peak_mb,
           "finished": _now(), "provenance": {**provenance(), "peak_mem_method": memory.method}}
    if memory.growth_mb is not None:
        out["provenance"].update(rss_start_mb=round(memory.start_mb, 1),
                                 peak_growth_mb=round(memory.growth_mb, 1))
    cuda_peak = _cuda_peak_mb()
    if cuda_peak is not None:
        out["provenance"]["cuda_peak_mem_mb"] = cuda_peak
    return out


#: what a job may raise and still be recorded (as ``failed``, ``skipped`` or ``diverged``):
#: any Exception, and SystemExit, so that a model calling ``sys.exit`` fails its own job
#: only, in the seqbench process (inline) as in a worker. Ctrl-C (KeyboardInterrupt) and
#: a time limit (:class:`JobTimeout`) pass through.
JOB_ERRORS = (Exception, SystemExit)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job: sample the task's splits, fit the model, score it on the test split."""
    record = base_record(job)
    record.update(measured(lambda: _run_job_into(job, record)))
    record.setdefault("device", device_name(None))
    return record


def _run_job_into(job: dict[str, Any], record: dict[str, Any]) -> None:
    """The body of :func:`run_job`: fills ``record`` with status, metrics and errors."""
    try:
        task, spec, (train, valid, test), model = prepare_job(job, record)
        fit0 = time.perf_counter()
        model.fit(train, valid, shape=spec.shape)
        record["fit_s"] = time.perf_counter() - fit0
        score_job(model, task, test, record)
    except JOB_ERRORS as exc:  # a failing job must not take the suite down
        record_failure(record, exc)


def prepare_job(job: dict[str, Any], record: dict[str, Any]):
    """What a job fits and scores: ``(task, spec, (train, valid, test), model)``, the model
    unfitted, with the job's seed as its ``random_state`` where that is ``None``. Fills the
    task's metric fields of ``record``; raises :class:`IncompatibleError` when the model's
    tags do not cover the task's data."""
    task_cls = registry.tasks.get(job["task"])
    task = task_cls(**job["task_params"])
    spec = task.spec()
    record.update(metric=spec.metric, higher_is_better=spec.higher_is_better,
                  chance=spec.chance, oracle=spec.oracle)
    data = job["data"]
    splits = task.splits(job["seed"], data["n_train"], data["n_valid"], data["n_test"])
    model_cls = registry.models.get(job["model"])
    params = dict(job["model_params"])
    if "random_state" in params and params["random_state"] is None:
        params["random_state"] = job["seed"]
    model = model_cls(**params)
    why = model.incompatibility(splits[0], spec.shape, spec.needs_proba)
    if why:
        raise IncompatibleError(why)
    return task, spec, splits, model


def score_job(model, task, test, record: dict[str, Any],
              diagnostics: dict[str, Any] | None = None) -> None:
    """Score a fitted model on the test split into ``record`` (status ``ok``);
    ``diagnostics``: ``model.diagnostics(test)`` when the caller has it already."""
    result = evaluate(model, task, test)
    record.update({k: result[k] for k in ("score", "normalised", "metrics", "slices")})
    record["curve"] = model.training_curve()
    record["diagnostics"] = model.diagnostics(test) if diagnostics is None else diagnostics
    record["n_params"] = model.n_parameters()
    record["device"] = device_name(getattr(model, "device_", None))
    record["status"] = "ok"


def record_failure(record: dict[str, Any], exc: BaseException) -> None:
    """The status and error of a job that raised: ``skipped`` (incompatible), ``diverged``
    or ``failed`` (with the last traceback lines)."""
    if isinstance(exc, IncompatibleError):
        record.update(status="skipped", error=str(exc))
    elif isinstance(exc, DivergedError):
        record.update(status="diverged", error=str(exc))
    else:
        record.update(status="failed", error=failure_text(exc))


def run_unit(job: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """What a worker runs: :func:`run_job` for a job, or, for a stack job (a job with a
    ``"stack"`` list, see :mod:`seqbench.stacking`), its list of records, one per member."""
    if "stack" in job:
        from .stacking import run_stack

        return run_stack(job)
    return run_job(job)


class JobTimeout(BaseException):
    """Raised inside a job's thread when it runs past its time limit (a ``BaseException``,
    so that :func:`run_job`'s failure handling does not swallow it)."""


def stopped_record(job: dict[str, Any], status: str, error: str, started: str, wall_s: float,
                   device: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """The record of a job that did not return one itself (timed out, or its worker died);
    for a stack job, one such record per member (``wall_s`` split evenly among them).
    It carries its task's metric, direction, chance and oracle (:func:`_task_fields`), so
    a table whose first row for a setting is such a record still names them."""
    if "stack" in job:
        from .stacking import stopped_stack

        return stopped_stack(job, status, error, started, wall_s, device)
    record = base_record(job)
    record.update(_task_fields(job))  # what the tables show for its task setting
    record.update(status=status, error=error, started=started, finished=_now(), wall_s=wall_s,
                  device=device or device_name(None), provenance=provenance())
    if status == "timeout":  # the limit it ran under: a higher one runs it again
        record["provenance"]["timeout_s"] = job.get("timeout")
    return record


_TASK_FIELDS: dict[str, dict[str, Any]] = {}


def _task_fields(job: dict[str, Any]) -> dict[str, Any]:
    """``metric``, ``higher_is_better``, ``chance`` and ``oracle`` of a job's task, from
    its spec (built in the driver, once per task setting); empty where the spec cannot be
    built here (a task not installed in the driver): the record is kept either way."""
    try:
        key = canonical_hash({"task": job.get("task"), "params": job.get("task_params")})
        if key not in _TASK_FIELDS:
            spec = registry.tasks.get(job["task"])(**(job["task_params"] or {})).spec()
            _TASK_FIELDS[key] = {"metric": spec.metric,
                                 "higher_is_better": bool(spec.higher_is_better),
                                 "chance": spec.chance, "oracle": spec.oracle}
        return dict(_TASK_FIELDS[key])
    except Exception:  # noqa: BLE001 - losing the record would be worse than no metric
        return {}


def run_job_with_timeout(job: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """:func:`run_unit` (a job or a stack job), stopped after ``job["timeout"]`` seconds
    (none: no limit).

    The limit is enforced in the calling thread: a timer raises :class:`JobTimeout` in
    it (``PyThreadState_SetAsyncExc``). Python delivers that exception at the next
    bytecode the thread runs, so a job stuck inside one long C call (a huge matrix
    product) stops only when that call returns. The inline and Dask executors use this;
    the local executor kills the worker process instead, which stops anything at once.
    """
    timeout = job.get("timeout")
    if not timeout:
        return run_unit(job)
    tid = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                           ctypes.py_object(JobTimeout))

    started, wall0 = _now(), time.perf_counter()
    timer = threading.Timer(float(timeout), fire)
    timer.daemon = True
    try:
        timer.start()
        try:
            record = run_unit(job)
        finally:
            with lock:
                state["done"] = True
                if state["fired"]:  # withdraw the exception if it has not been raised yet
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)
            timer.cancel()
    except JobTimeout:
        return stopped_record(job, "timeout",
                              f"did not finish within its {timeout:g} s time limit; "
                              "interrupted in its thread", started, time.perf_counter() - wall0)
    return record


def limit_threads(threads: int) -> Callable[[], None]:
    """Run this process's numerical code on ``threads`` threads: torch's intra-op pool and
    the BLAS/OpenMP pools numpy and scipy have loaded (through threadpoolctl), so that a
    job gives the same numbers whichever executor runs it. Returns a function that puts
    the previous settings back."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        pools = threadpool_limits(limits=threads)
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pools = None

    def restore() -> None:
        if pools is not None:
            pools.restore_original_limits()
        torch.set_num_threads(previous)

    return restore


class InlineExecutor:
    """Runs jobs one after another in the driver process (for debugging); a job past its
    time limit is interrupted in the driver's thread (see :func:`run_job_with_timeout`)."""

    name = "inline"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self.running = 0

    def check(self) -> None:
        """Nothing to reach: the driver runs the jobs."""

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        restore = limit_threads(self.threads)
        try:
            for job in jobs:
                self.running = 1
                record = run_job_with_timeout(job)
                self.running = 0
                yield record  # a list of records for a stack job
        finally:
            self.running = 0
            restore()


def select_jobs(
    jobs: list[dict[str, Any]], store: Store, *, force: bool = False, retry_failed: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``jobs`` into (to run, already done) given what ``store`` holds. A job stored
    as ``timeout`` runs again when its time limit is now higher than the one it ran under
    (or gone)."""
    stored = store.statuses()
    limits = store.timeout_limits()
    todo, done = [], []
    seen = set()
    for job in jobs:
        if job["hash"] in seen:  # the same job listed twice in one suite runs once
            continue
        seen.add(job["hash"])
        status = stored.get(job["hash"])
        longer = status == "timeout" and _longer_limit(job.get("timeout"),
                                                       limits.get(job["hash"]))
        if force or status is None or longer or (retry_failed and status in REDO_ON_RETRY):
            todo.append(job)
        else:
            done.append(job)
    return todo, done


def _longer_limit(limit: float | None, ran_under: float | None) -> bool:
    """Whether a time limit of ``limit`` seconds (None: none) gives a job more time than
    the ``ran_under`` limit it timed out under (None: not known)."""
    if ran_under is None:
        return False
    return not limit or float(limit) > ran_under


def describe_job(job: dict[str, Any]) -> str:
    def fmt(d):
        return ",".join(f"{k}={v}" for k, v in d.items())

    t = job["task_label"] + (f"({fmt(job['task_sweep'])})" if job["task_sweep"] else "")
    m = job["model_label"] + (f"({fmt(job['model_sweep'])})" if job["model_sweep"] else "")
    return f"{m} on {t} seed {job['seed']}"


def _outcome(record: dict[str, Any]) -> str:
    score = record.get("score")
    what = (f"{record['metric']}={score:.4g}" if score is not None
            else (record.get("error") or "").splitlines()[0][:120] if record.get("error") else "")
    return f"{describe_job(record)}: {record['status']} {what} ({record['wall_s']:.1f} s)"


class _Lines:
    """Progress as one plain line per finished job (for logs and pipes)."""

    def __init__(self, say: Callable[[str], None], total: int) -> None:
        self.say, self.total = say, total

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, i: int, record: dict[str, Any], counts: Counter, running: int) -> None:
        self.say(f"[{i}/{self.total}] {_outcome(record)}")


class _Bar:
    """A rich progress bar: done, failed, running and the ETA; jobs that do not finish ok
    are printed above it."""

    def __init__(self, total: int, name: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn())
        self.task = self.progress.add_task(name, total=total, state="")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, i: int, record: dict[str, Any], counts: Counter, running: int) -> None:
        if record["status"] not in ("ok", "skipped"):
            self.progress.console.print(f"{record['status']}: {_outcome(record)}",
                                        markup=False, highlight=False)
        bad = sum(counts[s] for s in REDO_ON_RETRY)
        self.progress.update(self.task, completed=i,
                             state=f"ok {counts['ok']}  not ok {bad}  running {running}")


def suite_jobs(suite: Suite, timeout: float | None = None) -> list[dict[str, Any]]:
    """The suite's jobs, each with the time limit ``timeout`` (seconds) where given, in
    place of the suite's ``[budget] timeout``."""
    jobs = suite.jobs()
    if timeout is not None:
        jobs = [{**job, "timeout": timeout} for job in jobs]
    return jobs


def run_suite(
    suite: Suite,
    store: Store,
    executor=None,
    *,
    force: bool = False,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = print,
    timeout: float | None = None,
    progress: str = "lines",
    stack: int = 1,
) -> dict[str, Any]:
    """Run every job of ``suite`` not yet in ``store``; return a summary of counts.

    ``timeout`` (seconds) overrides the suite's ``[budget] timeout`` for every job.
    ``progress`` is ``"lines"`` (one line per finished job through ``log``), ``"bar"``
    (a rich progress bar) or ``"none"``; ``log=None`` silences everything. Records are
    written to ``store`` by this function only, one transaction each, as they arrive.
    Before any job runs, the suite's text and its current job list are recorded
    (:meth:`Store.write_suite`), so the suite's tables show its current jobs only.

    ``stack`` > 1 groups the jobs to run that differ only in their seed and the model
    parameters a stack member may keep (``random_state``, ``lr``, ``weight_decay``, ...;
    :data:`seqbench.models.stacked.PER_MEMBER`) and whose model can be trained stacked
    (LSTM), up to ``stack`` per group, into stack jobs, each trained as one module by one
    worker
    (:mod:`seqbench.stacking`); the store still gets one row per job.
    """
    jobs = suite_jobs(suite, timeout)
    todo, done = select_jobs(jobs, store, force=force, retry_failed=retry_failed)
    from .stacking import stack_jobs

    units = stack_jobs(todo, stack)  # jobs, and stack jobs of several seeds
    # the suite's text and its current job list (what its tables show from now on)
    store.write_suite(suite.name, suite.path, suite.text, canonical_hash(suite.text), _now(),
                      jobs=jobs)
    executor = executor or InlineExecutor()
    say = log or (lambda _msg: None)
    stacks = [len(u["stack"]) for u in units if "stack" in u]
    say(f"suite {suite.name}: {len(jobs)} jobs, {len(done)} already in the store, "
        f"{len(todo)} to run ({executor.name})"
        + (f"; {sum(stacks)} of them in {len(stacks)} stack{'s' * (len(stacks) > 1)}"
           if stacks else ""))
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    if log is None or progress == "none":
        shown = _Lines(lambda _msg: None, len(todo))
    elif progress == "bar":
        shown = _Bar(len(todo), suite.name)
    else:
        shown = _Lines(say, len(todo))
    records = _records(executor, units)
    try:
        with shown:
            for i, record in enumerate(_each(records), 1):
                record["provenance"] = {**(record.get("provenance") or {}),
                                        "executor": executor.name}
                store.write(record)
                counts[record["status"]] += 1
                shown.update(i, record, counts, getattr(executor, "running", 0))
    finally:
        close = getattr(records, "close", None)
        if close is not None:  # stops the executor's workers, also on Ctrl-C
            close()
    summary = {"jobs": len(jobs), "already_done": len(done), "ran": len(todo),
               "wall_s": time.perf_counter() - t0, **{s: counts[s] for s in counts}}
    return summary


def _records(executor, jobs: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    if not jobs:
        return iter(())
    return executor.run(jobs)


def _each(results: Iterable[dict[str, Any] | list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The records of an executor's results, a stack job's list flattened."""
    for result in results:
        yield from (result if isinstance(result, list) else [result])


EXECUTORS = "inline, local, dask-local:N, dask://HOST:PORT"


def make_executor(spec: str, jobs: int | None = None, threads: int = 1, *,
                  gpu_slots: int = 1, n_gpus: int | None = None):
    """An executor from its CLI name: ``inline``, ``local`` (worker processes, ``jobs`` of
    them for CPU jobs, default: the number of cores), ``dask-local:N`` (a Dask
    ``LocalCluster`` of N worker processes on loopback, for this run) or
    ``dask://HOST:PORT`` / ``tcp://HOST:PORT`` (an existing Dask scheduler).

    Only the spelling and the numbers are checked here; :meth:`check` on the returned
    executor reaches a remote scheduler, and workers start when jobs are run.
    """
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise SeqbenchError(f"-j/--jobs: expected an int >= 1, got {jobs!r}")
    if not isinstance(threads, int) or threads < 1:
        raise SeqbenchError(f"--threads: expected an int >= 1, got {threads!r}")
    if not isinstance(gpu_slots, int) or gpu_slots < 1:
        raise SeqbenchError(f"--gpu-slots: expected an int >= 1, got {gpu_slots!r}")
    if spec == "inline":
        return InlineExecutor(threads=threads)
    from . import executors

    if spec == "local":
        return executors.LocalExecutor(jobs, threads=threads, gpu_slots=gpu_slots, n_gpus=n_gpus)
    if spec.startswith("dask-local"):
        n = spec[len("dask-local"):]
        if n == "":
            n_workers = jobs
        elif n.startswith(":") and n[1:].isdigit() and int(n[1:]) >= 1:
            n_workers = int(n[1:])
        else:
            raise SeqbenchError(f"executor {spec!r}: expected dask-local:N with N an int >= 1")
        return executors.DaskExecutor(None, n_workers=n_workers, threads=threads)
    for scheme in ("dask://", "tcp://"):
        if spec.startswith(scheme):
            hostport = spec[len(scheme):]
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise SeqbenchError(f"executor {spec!r}: expected {scheme}HOST:PORT, "
                                    "e.g. dask://127.0.0.1:8786")
            return executors.DaskExecutor(f"tcp://{hostport}", threads=threads)
    raise SeqbenchError(f"unknown executor {spec!r}; accepted: {EXECUTORS}")
