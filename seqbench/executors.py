"""Executors that run many jobs at once: local worker processes and Dask.

Every executor runs the same job function (:func:`seqbench.runner.run_job`, or
:func:`seqbench.stacking.run_stack` for a stack job, both through
:func:`seqbench.runner.run_unit`) and only *returns* records (a stack job returns one per
member, as a list); the driver (:func:`seqbench.runner.run_suite`) writes them to the
store. An executor's ``run(jobs)`` is a generator of records in completion order; closing
it (the driver does, also on Ctrl-C) stops every worker it started.

Local executor
--------------
Persistent worker processes, one job at a time each, talking to the driver over a pipe:

* ``-j N`` CPU workers (default: the number of cores, less one per GPU slot), each with
  ``threads`` torch / BLAS / OpenMP threads (default 1), so N workers use N cores and
  never oversubscribe them.
* With CUDA devices, ``gpu_slots`` extra workers per GPU, each pinned to one device
  (``device="cuda:i"`` is passed to the model). A job is a *GPU job* when its model uses
  torch, honours ``device`` and the job asks for ``"auto"`` or ``"cuda[:i]"``; GPU jobs go
  to GPU slots only, CPU jobs to CPU workers, and a GPU slot with no GPU job left takes CPU
  jobs, so nothing idles. Without CUDA every job is a CPU job.
* Start method: ``forkserver`` where the platform has it, else ``spawn``; never ``fork``.
  Forking the driver would copy a process that has imported torch (whose OpenMP pool and
  CUDA context do not survive a fork) and holds the store's SQLite connection.
  ``spawn`` is safe but re-imports torch in every new worker (one to two seconds, paid
  again for each worker replaced after a timeout or crash); the fork server is a fresh,
  single-threaded interpreter that imports seqbench and torch once and forks each worker
  from there, so a worker starts in milliseconds and the libraries' pages are shared.
* Time limit: ``job["timeout"]`` seconds from the moment the worker starts the job; past
  it the worker is killed (SIGKILL, which stops anything, even a stuck C call), the job
  is recorded as ``timeout`` and a fresh worker takes its place. A stack job's limit is
  the per-job limit × its members (:mod:`seqbench.stacking`).
* A worker that dies inside a job (``os._exit``, a segfault, the kernel's OOM killer)
  makes that job ``failed`` with how the worker ended; a fresh worker takes its place.
* Models and tasks registered in the driver with ``registry.models.register`` (tests,
  notebooks) are registered in every worker too (their classes must be importable by
  module path, which ``sys.path`` of the driver is passed on to ensure).

Dask executor
-------------
``dask://HOST:PORT`` submits to an existing scheduler; ``dask-local:N`` starts a
``LocalCluster`` of N single-threaded worker processes on 127.0.0.1 for the run and
shuts it down afterwards. Each job is one task running
:func:`seqbench.runner.run_job_with_timeout` in a worker thread (with ``threads`` torch
threads). The time limit is enforced on the worker, from the moment the task starts
there: the job's thread is interrupted with an exception at its next Python bytecode,
the task returns a ``timeout`` record, and the worker thread is free again. A job stuck
inside one long C call is only interrupted when that call returns. A worker process that
dies (segfault, ``os._exit``, over its memory limit) is restarted by its nanny and Dask
retries the task on another worker up to ``distributed.scheduler.allowed-failures``
times; then the job is recorded as ``failed`` (``KilledWorker``). Torch jobs ask for one
unit of the worker resource ``GPU`` when some worker declares it (start GPU workers
with ``--resources GPU=K`` for K jobs per GPU); otherwise they run anywhere.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any

from . import registry
from .errors import SeqbenchError
from .provenance import device_name
from .runner import _now, limit_threads, run_job_with_timeout, run_unit, stopped_record
from .store import plain_record

# -- routing ------------------------------------------------------------------------------


def cuda_device_count() -> int:
    """CUDA devices torch can see (0 without CUDA or without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _members(jobs: list[dict[str, Any]]):
    """Every plain job of ``jobs``: a stack job's members, any other job itself."""
    for job in jobs:
        yield from job.get("stack", [job])


def check_cuda_jobs(jobs: list[dict[str, Any]]) -> None:
    """Refuse, in one line, jobs of torch models that ask for a CUDA device (``"cuda"``,
    ``"cuda:i"``; not ``"auto"``) this machine's torch does not see: run here, each would
    only fail."""
    asked: dict[str, dict[str, Any]] = {}
    for member in _members(jobs):
        device = member["model_params"].get("device")
        if isinstance(device, str) and device.startswith("cuda"):
            tags = registry.models.get(member["model"]).tags()
            if tags["uses_torch"] and tags["device_aware"]:
                asked.setdefault(device, member)
    if not asked:
        return
    n = cuda_device_count()
    for device, job in asked.items():
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n:
            have = ("no CUDA device" if n == 0
                    else f"{n} CUDA device{'s' * (n > 1)} (cuda:0..cuda:{n - 1})")
            raise SeqbenchError(
                f"model {job['model_label']!r} asks for device {device!r}, but torch sees "
                f"{have} on this machine; use device = \"auto\" (a GPU where there is one, "
                "else the CPU) or \"cpu\", or a Dask cluster with GPU workers")


def wants_gpu(job: dict[str, Any]) -> bool:
    """Whether ``job`` should run on a GPU when there is one: its model uses torch, honours
    ``device`` and the job leaves the device to seqbench ("auto") or asks for CUDA."""
    tags = registry.models.get(job["model"]).tags()
    device = job["model_params"].get("device")
    return (bool(tags["uses_torch"]) and bool(tags["device_aware"]) and isinstance(device, str)
            and (device == "auto" or device.startswith("cuda")))


@dataclass
class Slot:
    """One worker: ``kind`` "cpu" or "gpu"; ``gpu`` the CUDA device index of a GPU slot."""

    kind: str
    gpu: int | None = None

    @property
    def device(self) -> str | None:
        return None if self.gpu is None else f"cuda:{self.gpu}"


def plan_slots(n_cpu: int | None, n_gpus: int, gpu_slots: int,
               cores: int | None = None) -> list[Slot]:
    """The workers to start: ``gpu_slots`` per GPU, then CPU workers (``n_cpu``, or by
    default one per core not already taken by a GPU slot, at least one)."""
    gpu = [Slot("gpu", g) for g in range(n_gpus) for _ in range(gpu_slots)]
    if n_cpu is None:
        n_cpu = max(1, (cores or os.cpu_count() or 1) - len(gpu))
    return gpu + [Slot("cpu") for _ in range(n_cpu)]


@dataclass
class Queues:
    """Jobs waiting for a worker, split into GPU jobs and CPU jobs."""

    gpu: deque = field(default_factory=deque)
    cpu: deque = field(default_factory=deque)

    @classmethod
    def of(cls, jobs: list[dict[str, Any]], n_gpus: int) -> Queues:
        q = cls()
        for job in jobs:
            (q.gpu if n_gpus and wants_gpu(job) else q.cpu).append(job)
        return q

    def __len__(self) -> int:
        return len(self.gpu) + len(self.cpu)

    def take(self, slot: Slot) -> dict[str, Any] | None:
        """The next job for ``slot``, with the slot's device set for a GPU job: GPU slots
        take GPU jobs first, then CPU jobs; CPU slots take CPU jobs only."""
        if slot.kind == "gpu" and self.gpu:
            job = self.gpu.popleft()
            device = job["model_params"].get("device")
            if device in ("auto", "cuda"):  # "cuda:i" stays as the suite asked
                job = {**job, "model_params": {**job["model_params"], "device": slot.device}}
            return job
        if self.cpu:
            return self.cpu.popleft()
        return None


# -- the local executor ---------------------------------------------------------------------

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _die_with_driver(driver: int) -> None:
    """End this worker as soon as the driver process ``driver`` ends, however it ends
    (SIGKILL included), so no worker goes on computing a job nobody will read: a daemon
    thread waits on a pidfd of the driver (Linux), or checks every second that it still
    exists, then ``os._exit``. (Under ``forkserver`` the worker's parent is the fork
    server, not the driver, so the parent-death signal would not do.)"""
    import threading

    def watch() -> None:
        try:
            fd = os.pidfd_open(driver)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd: poll
            while True:
                time.sleep(1.0)
                try:
                    os.kill(driver, 0)
                except ProcessLookupError:
                    os._exit(1)
                except PermissionError:
                    pass
        import select

        select.select([fd], [], [])  # readable once the driver has ended
        os._exit(1)

    threading.Thread(target=watch, name="seqbench-driver-watch", daemon=True).start()


def _worker_main(conn, threads: int, path: list[str], extras: dict[str, dict[str, type]],
                 driver: int) -> None:
    """A local worker: receive jobs on ``conn``, send ("started", job hash) then
    ("done", record) for each; exit on ``None`` or when the driver's end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with_driver(driver)
    for entry in path:
        if entry not in sys.path:
            sys.path.append(entry)
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    limit_threads(threads)  # torch, and the BLAS/OpenMP pools numpy has loaded already
    for kind, reg in (("models", registry.models), ("tasks", registry.tasks)):
        for name, cls in extras.get(kind, {}).items():
            reg._extra[name] = cls
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(("started", job["hash"]))
        record = run_unit(job)  # a list of records for a stack job
        try:
            message = ForkingPickler.dumps(("done", record))  # what conn.send would send
        except Exception:  # noqa: BLE001 - an object a plugin put in its record
            plain = ([plain_record(r) for r in record] if isinstance(record, list)
                     else plain_record(record))
            message = ForkingPickler.dumps(("done", plain))  # as the store would keep it anyway
        try:
            conn.send_bytes(message)
        except (BrokenPipeError, OSError):
            return


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        extra = (" (out of memory? the kernel's OOM killer sends SIGKILL)"
                 if name == "SIGKILL" else "")
        return f"killed by {name}{extra}"
    return f"exit code {exitcode}"


class _Worker:
    def __init__(self, ctx, slot: Slot, threads: int, extras) -> None:
        self.slot = slot
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main,
                                   args=(child, threads, list(sys.path), extras, os.getpid()),
                                   daemon=True,
                                   name=f"seqbench-{slot.kind}-worker")
        self.process.start()
        child.close()
        self.job: dict[str, Any] | None = None
        self.started: float | None = None   # perf_counter when the worker began the job
        self.started_at: str | None = None

    def send(self, job: dict[str, Any]) -> None:
        self.job, self.started, self.started_at = job, None, None
        self.conn.send(job)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass


def default_start_method() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class LocalExecutor:
    """Persistent worker processes on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, n_jobs: int | None = None, *, threads: int = 1, gpu_slots: int = 1,
                 n_gpus: int | None = None, start_method: str | None = None) -> None:
        self.n_jobs = n_jobs
        self.threads = threads
        self.gpu_slots = gpu_slots
        self.n_gpus = n_gpus
        self.start_method = start_method
        self.running = 0

    def check(self) -> None:
        """Nothing remote to reach; workers start when jobs are run."""

    def slots(self) -> list[Slot]:
        n_gpus = cuda_device_count() if self.n_gpus is None else self.n_gpus
        return plan_slots(self.n_jobs, n_gpus, self.gpu_slots)

    def _context(self, jobs: list[dict[str, Any]]):
        method = self.start_method or default_start_method()
        ctx = mp.get_context(method)
        if method == "forkserver":
            # the fork server imports, once, what every worker needs: seqbench, torch and
            # the modules of this suite's models and tasks (already imported here, so they
            # import cleanly); it keeps this list for the life of the driver process
            models = {registry.models.get(j["model"]) for j in jobs}
            modules = {cls.__module__ for cls in models}
            modules |= {registry.tasks.get(j["task"]).__module__ for j in jobs}
            if any(cls.tags()["uses_torch"] for cls in models):
                # torch imports its compiler stack (and sympy) lazily at the first optimiser
                # step: seconds per worker, paid once here instead
                modules.add("torch._dynamo")
            ctx.set_forkserver_preload(["seqbench.executors", "torch", *sorted(modules)])
        return ctx

    def run(self, jobs: list[dict[str, Any]]):
        slots = self.slots()
        n_gpus = len({s.gpu for s in slots if s.gpu is not None})
        queues = Queues.of(jobs, n_gpus)
        # no more workers than jobs (GPU slots first when there are GPU jobs)
        slots = [s for s in slots if s.kind == "gpu"][:len(queues) if queues.gpu else 0] + \
            [s for s in slots if s.kind == "cpu"][:len(queues.cpu)]
        if not slots:  # GPU jobs only but GPU slots planned away: cannot happen; be safe
            slots = [Slot("cpu")]
        ctx = self._context(jobs)
        extras = {"models": dict(registry.models._extra), "tasks": dict(registry.tasks._extra)}
        saved = {var: os.environ.get(var) for var in THREAD_ENV}
        os.environ.update({var: str(self.threads) for var in THREAD_ENV})  # inherited by spawn
        workers: list[_Worker] = []
        try:
            workers = [_Worker(ctx, slot, self.threads, extras) for slot in slots]
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        try:
            yield from self._loop(ctx, workers, queues, extras)
        finally:
            self.running = 0
            for w in workers:
                if w.job is None:
                    w.stop()
            for w in workers:
                if w.job is None:
                    w.process.join(2)
                w.kill()

    def _loop(self, ctx, workers: list[_Worker], queues: Queues, extras):
        while True:
            for w in workers:
                if w.job is None and queues:
                    job = queues.take(w.slot)
                    if job is not None:
                        w.send(job)
            busy = [w for w in workers if w.job is not None]
            self.running = sum(1 for w in busy if w.started is not None)
            if not busy:
                return
            now = time.perf_counter()
            deadlines = [w.started + float(w.job["timeout"]) for w in busy
                         if w.started is not None and w.job.get("timeout")]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else None
            by_conn = {w.conn: w for w in busy}
            by_sentinel = {w.process.sentinel: w for w in busy}
            ready = wait([*by_conn, *by_sentinel], timeout=wait_s)
            replace: list[tuple[_Worker, dict[str, Any]]] = []
            for obj in ready:
                w = by_conn.get(obj)
                if w is None or w.job is None:
                    continue
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    continue  # the worker died; its sentinel says so below
                if kind == "started":
                    w.started, w.started_at = time.perf_counter(), _now()
                else:
                    w.job = None
                    yield payload
            for obj in ready:
                w = by_sentinel.get(obj)
                if w is None or w.job is None:
                    continue
                try:  # a record sent just before the worker ended still counts
                    while w.job is not None and w.conn.poll():
                        kind, payload = w.conn.recv()
                        if kind == "done":
                            w.job = None
                            yield payload
                except (EOFError, OSError):
                    pass
                if w.job is None:
                    replace.append((w, None))
                    continue
                w.process.join(1)
                job, started = w.job, w.started or time.perf_counter()
                how = _death(w.process.exitcode)
                record = stopped_record(job, "failed", f"WorkerDied: the worker process died while "
                                        f"running this job ({how})", w.started_at or _now(),
                                        time.perf_counter() - started, self._device(w, job))
                replace.append((w, record))
            now = time.perf_counter()
            for w in busy:
                if (w.job is not None and w.started is not None and w.job.get("timeout")
                        and now >= w.started + float(w.job["timeout"])
                        and all(w is not r[0] for r in replace)):
                    timeout = float(w.job["timeout"])
                    record = stopped_record(w.job, "timeout",
                                            f"did not finish within its {timeout:g} s time limit;"
                                            " the worker process was killed", w.started_at,
                                            now - w.started, self._device(w, w.job))
                    replace.append((w, record))
            for w, record in replace:
                w.job = None
                w.kill()
                fresh = _Worker(ctx, w.slot, self.threads, extras)
                workers[workers.index(w)] = fresh
                if record is not None:
                    yield record

    @staticmethod
    def _device(w: _Worker, job: dict[str, Any]) -> str:
        device = job["model_params"].get("device")
        return device_name(device if isinstance(device, str) and device.startswith("cuda")
                           else None)


# -- Dask -------------------------------------------------------------------------------------


#: the thread count this Dask worker process was set to (None: not yet)
_dask_threads: int | None = None


def _used_extras(jobs: list[dict[str, Any]]) -> dict[str, dict[str, type]]:
    """The models and tasks registered in this process (not installed as entry points)
    that ``jobs`` use: all a worker needs of them."""
    members = list(_members(jobs))
    used = {"models": {m["model"] for m in members}, "tasks": {m["task"] for m in members}}
    return {kind: {name: cls for name, cls in reg._extra.items() if name in used[kind]}
            for kind, reg in (("models", registry.models), ("tasks", registry.tasks))}


def _dask_task(job: dict[str, Any], threads: int, extras: bytes) -> dict[str, Any]:
    """One job on a Dask worker (runs in a worker thread). ``extras``: the pickled
    :func:`_used_extras`, loaded here so that a plugin the worker cannot import is named
    in the job's error."""
    global _dask_threads
    if _dask_threads != threads:  # once per worker process: torch and the BLAS pools
        limit_threads(threads)
        _dask_threads = threads
    try:
        classes = pickle.loads(extras)
    except (ImportError, AttributeError) as exc:
        raise SeqbenchError(f"this Dask worker cannot load the models or tasks registered in "
                            f"the driver that this job uses ({type(exc).__name__}: {exc}); "
                            "install their package on every worker") from None
    for kind, reg in (("models", registry.models), ("tasks", registry.tasks)):
        for name, cls in classes.get(kind, {}).items():
            reg._extra.setdefault(name, cls)
    return run_job_with_timeout(job)


@contextlib.contextmanager
def _shielded():
    """Ctrl-C and SIGTERM held back until the end while a local Dask cluster starts or
    stops (in the main thread; elsewhere signals do not reach the code), so that the
    cluster is never left half started or half closed; they take effect after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    hold = lambda signum, frame: held.append(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)


class DaskExecutor:
    """Jobs as tasks on a Dask cluster (see the module docstring)."""

    connect_timeout = 10.0  # seconds to wait for a remote scheduler

    def __init__(self, address: str | None = None, *, n_workers: int | None = None,
                 threads: int = 1) -> None:
        self.address = address
        self.n_workers = n_workers
        self.threads = threads
        self.name = address if address else f"dask-local:{n_workers or os.cpu_count()}"
        self.local_devices = address is None  # jobs run on this machine's devices
        self.running = 0
        self.client = None
        self.cluster = None

    def _import(self):
        try:
            import distributed
        except ImportError:
            raise SeqbenchError("executor dask needs dask.distributed: pip install "
                                "'seqbench[dask]'") from None
        return distributed

    def check(self) -> None:
        """Connect to the scheduler (an error names it when it cannot be reached)."""
        if self.address is None:
            self._import()
            return
        distributed = self._import()
        try:  # only a check: run() connects again, so nothing stays open if no job runs
            client = distributed.Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else "no answer"
            raise SeqbenchError(f"executor dask: cannot reach the Dask scheduler at "
                                f"{self.address} ({type(exc).__name__}: {first})") from None
        try:  # a scheduler without workers would keep every job waiting, without a word
            client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError):
            raise SeqbenchError(f"executor dask: the Dask scheduler at {self.address} has no "
                                f"workers (none joined within {self.connect_timeout:g} s); "
                                f"start some: dask worker {self.address}") from None
        finally:
            client.close()

    def _open(self):
        distributed = self._import()
        if self.address is not None:
            try:
                self.client = distributed.Client(self.address, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise SeqbenchError(f"executor dask: cannot reach the Dask scheduler at "
                                    f"{self.address} ({type(exc).__name__})") from None
        else:
            import logging

            # the workers ignore Ctrl-C (seqbench._dask_worker): it is the driver's to
            # handle, as with the local executor's workers
            try:
                with _shielded():
                    self.cluster = distributed.LocalCluster(
                        n_workers=self.n_workers or os.cpu_count(), threads_per_worker=1,
                        processes=True, host="127.0.0.1", dashboard_address=":0",
                        silence_logs=logging.ERROR, preload=["seqbench._dask_worker"])
                self.client = distributed.Client(self.cluster)
            except BaseException:
                self.close()
                raise
        return distributed

    def close(self) -> None:
        with _shielded():  # a second Ctrl-C must not leave a cluster half closed
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            self.client = self.cluster = None

    def run(self, jobs: list[dict[str, Any]]):
        distributed = self._open()
        client = self.client
        import cloudpickle  # dask's own: classes defined in a script travel by value

        blobs: dict[str, bytes] = {}  # each job gets the driver's classes it uses, no more

        def extras(job):
            classes = _used_extras([job])
            key = repr({kind: sorted(c) for kind, c in classes.items()})
            if key not in blobs:
                blobs[key] = cloudpickle.dumps(classes)
            return blobs[key]

        workers = client.scheduler_info()["workers"].values()
        gpu_workers = any(w.get("resources", {}).get("GPU") for w in workers)
        futures, by_key = [], {}
        try:
            for job in jobs:
                gpu = gpu_workers and wants_gpu(job)
                future = client.submit(_dask_task, job, self.threads, extras(job), pure=False,
                                       key=f"seqbench-{job['hash'][:16]}-{len(futures)}",
                                       resources={"GPU": 1} if gpu else None)
                futures.append(future)
                by_key[future.key] = (job, time.perf_counter(), _now())
            pending = len(futures)
            for future in distributed.as_completed(futures):
                job, t0, started = by_key[future.key]
                try:
                    record = future.result()
                except distributed.KilledWorker as exc:
                    record = stopped_record(job, "failed", f"WorkerDied: the Dask workers running "
                                            f"this job died ({exc})", started,
                                            time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - one job must not stop the suite
                    record = stopped_record(job, "failed", f"{type(exc).__name__}: {exc}",
                                            started, time.perf_counter() - t0)
                pending -= 1
                self.running = min(pending, sum(w.get("nthreads", 1) for w in workers))
                yield record
        finally:
            self.running = 0
            unfinished = [f for f in futures if not f.done()]
            if unfinished and self.client is not None:
                self.client.cancel(unfinished)
            self.close()
