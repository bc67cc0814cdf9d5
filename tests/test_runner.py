"""The runner at scale: executors, failure isolation, timeouts, resume after SIGKILL,
Ctrl-C, retries, GPU routing, per-job memory and provenance."""

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import runner_plugins

from seqbench import heap, registry
from seqbench.cli import main
from seqbench.errors import SeqbenchError
from seqbench.executors import DaskExecutor, LocalExecutor, Queues, Slot, plan_slots
from seqbench.runner import InlineExecutor, PeakMemory, make_executor, run_suite
from seqbench.store import STATUSES, Store
from seqbench.suite import parse_suite

REPO = Path(__file__).resolve().parent.parent

# (chance, a small LSTM) x two seeds: 4 jobs of well under a second each.
TINY = """
[suite]
name = "tiny-runner"
seeds = [0, 1]

[data]
n_train = 200
n_valid = 50
n_test = 100

[budget]
max_steps = 20
device = "cpu"

[[task]]
name = "jane-recall"
lag = [3]
n_names = 4

[[model]]
name = "chance"

[[model]]
name = "lstm"
hidden_size = 8
eval_every = 10
"""

# every way a job can go wrong, next to jobs that go right
MIXED = """
[suite]
name = "mixed"
seeds = [0]

[data]
n_train = 100
n_valid = 20
n_test = 50

[[task]]
name = "jane-recall"
lag = 2
n_names = 4

[[model]]
name = "test-raise"

[[model]]
name = "test-sleep"
seconds = 60.0

[[model]]
name = "chance"

[[model]]
name = "lstm"
hidden_size = 4
max_steps = 10
eval_every = 5
device = "cpu"
"""


@pytest.fixture(autouse=True)
def plugins():
    """Register the misbehaving models of tests/runner_plugins.py for one test."""
    for name, cls in runner_plugins.MODELS.items():
        registry.models.register(name, cls)
    yield
    for name in runner_plugins.MODELS:
        registry.models._extra.pop(name, None)


@pytest.fixture(scope="module")
def dask_scheduler():
    """A real Dask LocalCluster for this module: 2 single-threaded worker processes on
    loopback; the tests reach it as ``dask://HOST:PORT``, like a user's cluster."""
    distributed = pytest.importorskip("distributed")
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        yield "dask://" + cluster.scheduler_address.removeprefix("tcp://")


def write(tmp_path, text, name="suite.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def rows(store_path, cols="*"):
    con = sqlite3.connect(store_path, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT {cols} FROM runs ORDER BY hash")]
    finally:
        con.close()


def run(text, store_path, executor, **kw):
    with Store(store_path) as store:
        return run_suite(parse_suite(text, "t.toml"), store, executor, log=None, **kw)


RESULT_COLS = "hash, status, score, metrics, slices, curve, n_params"


def test_same_results_inline_local_and_dask(tmp_path, dask_scheduler):
    """A real Dask LocalCluster (2 processes on loopback), the local executor (2 workers)
    and the inline executor give the same rows, metric for metric; a second local run
    (--force) gives them again; every row carries its provenance."""
    inline, local, dask = tmp_path / "i.sqlite", tmp_path / "l.sqlite", tmp_path / "d.sqlite"
    run(TINY, inline, InlineExecutor())
    run(TINY, local, LocalExecutor(2))
    run(TINY, dask, make_executor(dask_scheduler))
    reference = rows(inline, RESULT_COLS)
    assert len(reference) == 4 and {r["status"] for r in reference} == {"ok"}
    assert rows(local, RESULT_COLS) == reference
    assert rows(dask, RESULT_COLS) == reference
    run(TINY, local, LocalExecutor(2), force=True)
    assert rows(local, RESULT_COLS) == reference

    for r in rows(local):
        prov = json.loads(r["provenance"])
        for key in ("seqbench", "python", "torch", "numpy", "scikit-learn", "hmmlearn",
                    "filterpy", "pandas", "host"):
            assert prov[key], key
        assert "git_commit" in prov and prov["executor"] == "local"
        assert r["device"].startswith("cpu (")
        assert r["started"] <= r["finished"]
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_mem_mb"] > 10
        assert r["n_params"] > 0
    expected = "tcp://" + dask_scheduler.removeprefix("dask://")
    assert {json.loads(r["provenance"])["executor"] for r in rows(dask)} == {expected}


def test_raise_crash_and_timeout_are_recorded_and_the_suite_goes_on(tmp_path):
    """Local workers: a model that raises -> failed with the exception; a model that
    ends its worker with os._exit(3) -> failed, 'exit code 3'; a job past its time limit
    -> timeout, its worker killed and replaced; the other jobs finish ok."""
    text = MIXED.replace('name = "chance"', 'name = "chance"\n\n[[model]]\nname = "test-exit"')
    store = tmp_path / "s.sqlite"
    t0 = time.perf_counter()
    summary = run(text, store, LocalExecutor(2), timeout=6)
    assert time.perf_counter() - t0 < 50  # the 60 s sleeper was stopped, not waited for
    got = {r["model"]: r for r in rows(store)}
    assert summary["ran"] == 5 and summary["failed"] == 2 and summary["timeout"] == 1
    assert got["test-raise"]["status"] == "failed"
    assert got["test-raise"]["error"].startswith("RuntimeError: boom inside fit")
    assert got["test-exit"]["status"] == "failed"
    assert "worker process died" in got["test-exit"]["error"]
    assert "exit code 3" in got["test-exit"]["error"]
    assert got["test-sleep"]["status"] == "timeout"
    assert "6 s time limit" in got["test-sleep"]["error"]
    assert 6 <= got["test-sleep"]["wall_s"] < 30
    assert got["chance"]["status"] == "ok" and got["lstm"]["status"] == "ok"


@pytest.mark.parametrize("executor", ["inline", "dask"])
def test_thread_interrupt_timeouts_inline_and_on_dask(tmp_path, request, executor):
    """Inline and Dask stop a job past its limit inside its thread: same statuses as
    the local executor, and the suite goes on."""
    if executor == "dask":
        executor = request.getfixturevalue("dask_scheduler")
    store = tmp_path / "s.sqlite"
    t0 = time.perf_counter()
    summary = run(MIXED, store, make_executor(executor), timeout=6)
    assert time.perf_counter() - t0 < 50
    got = {r["model"]: r for r in rows(store)}
    assert summary["timeout"] == 1 and summary["failed"] == 1 and summary["ok"] == 2
    assert got["test-sleep"]["status"] == "timeout" and got["test-sleep"]["wall_s"] < 20
    assert got["test-raise"]["error"].startswith("RuntimeError: boom inside fit")
    assert got["chance"]["status"] == "ok" and got["lstm"]["status"] == "ok"


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_record_that_does_not_pickle_is_stored_as_inline_stores_it(tmp_path, executor):
    """A plugin's diagnostics holding a lambda: the local worker cannot pickle the record
    as it is, and sends it as the store keeps it (the lambda as its str); the job is ok
    under every executor, not a dead worker."""
    store = tmp_path / "s.sqlite"
    text = MIXED.replace("test-sleep", "test-odd-diagnostics").replace("seconds = 60.0", "")
    run(text, store, make_executor(executor, 1))
    got = {r["model"]: r for r in rows(store)}
    odd = got["test-odd-diagnostics"]
    assert odd["status"] == "ok", odd["error"]
    diagnostics = json.loads(odd["diagnostics"])
    assert diagnostics["value"] == 1.5 and diagnostics["probe"].startswith("<function ")
    assert got["chance"]["status"] == "ok" and got["lstm"]["status"] == "ok"


SLOW = MIXED.replace("seconds = 60.0", "seconds = 2.5").split("[[model]]\nname = \"lstm\"")[0]


def test_a_timed_out_job_runs_again_when_its_limit_goes_up(tmp_path):
    """A job stored as timeout is not redone under the same or a lower limit, but is
    under a higher one, or none; rows written before the limit was recorded say it in
    their error message."""
    store = tmp_path / "s.sqlite"
    summary = run(SLOW, store, InlineExecutor(), timeout=1)
    assert summary["timeout"] == 1 and summary["ran"] == 3
    slow = {r["model"]: r for r in rows(store)}["test-sleep"]
    assert json.loads(slow["provenance"])["timeout_s"] == 1
    assert run(SLOW, store, InlineExecutor(), timeout=1)["ran"] == 0
    assert run(SLOW, store, InlineExecutor(), timeout=0.5)["ran"] == 0
    con = sqlite3.connect(store)  # an older row: the limit only in its message
    prov = json.loads(slow["provenance"])
    del prov["timeout_s"]
    with con:
        con.execute("UPDATE runs SET provenance = ? WHERE hash = ?",
                    (json.dumps(prov), slow["hash"]))
    con.close()
    assert run(SLOW, store, InlineExecutor(), timeout=1)["ran"] == 0
    summary = run(SLOW, store, InlineExecutor(), timeout=30)
    assert summary["ran"] == 1 and summary["ok"] == 1
    assert {r["model"]: r for r in rows(store)}["test-sleep"]["status"] == "ok"


SYSEXIT = MIXED.replace("test-sleep", "test-sysexit").replace("seconds = 60.0", "")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_job_calling_sys_exit_fails_alone(tmp_path, executor):
    """A model that calls sys.exit(5) fails its own job, in the seqbench process
    (inline) as in a worker; the run goes on and the other jobs finish."""
    store = tmp_path / "s.sqlite"
    summary = run(SYSEXIT, store, make_executor(executor, 1))
    got = {r["model"]: r for r in rows(store)}
    assert summary["failed"] == 2 and summary["ok"] == 2
    assert got["test-sysexit"]["status"] == "failed"
    assert got["test-sysexit"]["error"].startswith("SystemExit: 5")
    assert got["chance"]["status"] == "ok" and got["lstm"]["status"] == "ok"


THREADS = MIXED.replace("test-sleep", "test-threads").replace("seconds = 60.0", "")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_jobs_run_their_blas_pools_on_the_executors_thread_count(tmp_path, executor):
    """Every executor runs a job with torch and the BLAS/OpenMP pools at its thread count
    (numbers that go through BLAS must not depend on which executor ran them), even when
    the seqbench process itself runs more BLAS threads; inline puts them back after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    store = tmp_path / "s.sqlite"
    with threadpool_limits(limits=2):
        before = [p["num_threads"] for p in threadpool_info()]
        run(THREADS, store, make_executor(executor, 1))
        after = [p["num_threads"] for p in threadpool_info()]
    got = {r["model"]: r for r in rows(store)}
    assert got["test-threads"]["status"] == "ok", got["test-threads"]["error"]
    assert after == before and 2 in before


def test_retry_failed_and_force(tmp_path, capsys):
    suite = write(tmp_path, MIXED.replace("seconds = 60.0", "seconds = 0.0"))
    store = tmp_path / "s.sqlite"
    args = ["run", str(suite), "--store", str(store), "--executor", "inline"]
    assert main(args) == 1  # test-raise failed: exit status 1
    out = capsys.readouterr().out
    assert "not ok: 1 failed (see why: seqbench results" in out
    before = {r["model"]: r for r in rows(store)}
    time.sleep(1.1)  # timestamps have one-second resolution
    # nothing ran, but the suite's stored failure still shows and still fails the run
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "4 already in the store, 0 to run" in out
    assert "not ok: 1 failed (see why: seqbench results" in out and "--retry-failed" in out
    assert main([*args, "--retry-failed"]) == 1
    assert "3 already in the store, 1 to run" in capsys.readouterr().out
    after = {r["model"]: r for r in rows(store)}
    assert after["test-raise"]["finished"] > before["test-raise"]["finished"]
    for name in ("chance", "lstm", "test-sleep"):
        assert after[name]["finished"] == before[name]["finished"]
    time.sleep(1.1)
    assert main([*args, "--force"]) == 1
    assert "0 already in the store, 4 to run" in capsys.readouterr().out
    forced = {r["model"]: r for r in rows(store)}
    assert all(forced[m]["finished"] > after[m]["finished"] for m in forced)
    assert len(rows(store)) == 4


# 7 small LSTM jobs of a fraction of a second each: long enough to be stopped in the middle
RESUMABLE = """
[suite]
name = "resumable"
seeds = [0, 1, 2, 3, 4, 5, 6]

[data]
n_train = 200
n_valid = 50
n_test = 100

[[task]]
name = "jane-recall"
lag = 3
n_names = 4

[[model]]
name = "lstm"
hidden_size = 8
max_steps = 300    # long enough that the signal lands while jobs are still running
eval_every = 50
device = "cpu"
"""


def _start(suite, store, *extra):
    cmd = [sys.executable, "-m", "seqbench.cli", "run", str(suite), "--store", str(store),
           "-j", "2", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Ctrl-C at its default in the driver, as in a terminal: a test run started in the
    # background of a shell script inherits SIGINT ignored, and so would the driver
    return cmd, env, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      start_new_session=True,  # its own process group
                                      preexec_fn=_default_sigint)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_rows(store, proc, n=1, limit=60):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if store.exists():
            try:
                got = rows(store, "hash, finished")
            except sqlite3.OperationalError:  # the table is being created
                got = []
            if len(got) >= n:
                return got
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no rows appeared")


def test_sigkill_the_driver_then_rerun_completes_without_repeating_work(tmp_path):
    suite, store = write(tmp_path, RESUMABLE), tmp_path / "s.sqlite"
    n_jobs = len(parse_suite(RESUMABLE, "x.toml").jobs())
    assert n_jobs == 7
    cmd, env, proc = _start(suite, store)
    _wait_for_rows(store, proc, n=2)
    os.killpg(proc.pid, signal.SIGKILL)   # the driver, its workers and the fork server
    proc.wait(10)
    before = {r["hash"]: r["finished"] for r in rows(store, "hash, finished")}
    assert 2 <= len(before) < n_jobs, "the kill came too late to test anything"
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already in the store, {n_jobs - len(before)} to run" in again.stdout
    after = rows(store, "hash, finished, status")
    assert len(after) == n_jobs and len({r["hash"] for r in after}) == n_jobs
    assert {r["status"] for r in after} == {"ok"}
    assert {h: r["finished"] for r in after for h in [r["hash"]] if h in before} == before


def test_ctrl_c_stops_cleanly_and_keeps_finished_jobs(tmp_path):
    suite, store = write(tmp_path, RESUMABLE), tmp_path / "s.sqlite"
    _, _, proc = _start(suite, store)
    _wait_for_rows(store, proc, n=1)
    os.killpg(proc.pid, signal.SIGINT)    # what a terminal sends on Ctrl-C: the whole group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted; finished jobs are kept" in err and "Traceback" not in err
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = rows(store)
    assert 1 <= len(kept) < 7
    for r in kept:
        assert r["status"] in STATUSES and r["finished"] and r["provenance"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_on_a_local_dask_cluster_is_one_line(tmp_path, signum):
    """The Dask workers leave Ctrl-C to seqbench (no worker tracebacks); the cluster is
    closed and no process is left behind."""
    pytest.importorskip("distributed")
    suite, store = write(tmp_path, RESUMABLE), tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "seqbench.cli", "run", str(suite), "--store", str(store),
           "--executor", "dask-local:2"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    _wait_for_rows(store, proc, n=1)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # a terminal's Ctrl-C: the whole group
    else:
        proc.send_signal(signum)  # kill PID
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(r"seqbench: (interrupted|terminated); finished jobs are kept in the "
                        rf"store {re.escape(str(store))} \(the table: seqbench results "
                        rf"--store {re.escape(str(store))} --suite resumable; to finish, run the "
                        r"same command again\)", err.strip()), err
    end = time.monotonic() + 20
    while time.monotonic() < end:  # the whole group is gone, the workers included
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        left = subprocess.run(["ps", "-o", "pid,args", "-g", str(proc.pid)],
                              capture_output=True, text=True).stdout
        raise AssertionError(f"processes left behind:\n{left}")


def test_sigterm_stops_cleanly_and_keeps_finished_jobs(tmp_path):
    suite, store = write(tmp_path, RESUMABLE), tmp_path / "s.sqlite"
    _, _, proc = _start(suite, store)
    _wait_for_rows(store, proc, n=1)
    proc.send_signal(signal.SIGTERM)      # what a scheduler or `kill` sends: the driver only
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "terminated; finished jobs are kept" in err and "Traceback" not in err
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert all(r["status"] in STATUSES and r["finished"] for r in rows(store))


def test_a_closed_output_pipe_stops_the_run_without_a_traceback(tmp_path):
    """`seqbench run SUITE | head -1`: the reader goes away; the run stops as on SIGPIPE
    (exit 141), its workers stopped and its finished jobs kept, with no traceback."""
    suite, store = write(tmp_path, RESUMABLE), tmp_path / "s.sqlite"
    _, _, proc = _start(suite, store)
    assert proc.stdout.readline().startswith("suite resumable: 7 jobs")
    proc.stdout.close()  # what `head -1` does after its line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert "Traceback" not in err
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert all(r["status"] == "ok" and r["finished"] for r in rows(store))


def test_run_refuses_another_programs_sqlite_file(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.close()
    before = other.read_bytes()
    assert main(["run", str(write(tmp_path, TINY)), "--store", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a seqbench store (it holds the tables t)" in err and err.count("\n") == 0
    assert other.read_bytes() == before


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        out[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return out


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _proc_table(), set(), {pid}
    while frontier:
        frontier = {p for p, (pp, _) in table.items() if pp in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_the_driver_is_killed(tmp_path):
    """SIGKILL to the driver alone (no handler runs): its workers, children of the fork
    server, must not go on computing."""
    endless = RESUMABLE.replace("seeds = [0, 1, 2, 3, 4, 5, 6]", "seeds = [0]").replace(
        "max_steps = 300", "max_steps = 10000000\npatience = 1000000")  # hours of training
    suite, store = write(tmp_path, endless), tmp_path / "s.sqlite"
    _, _, proc = _start(suite, store, "-j", "1")
    end = time.monotonic() + 60
    family: set[int] = set()
    while len(family) < 2 and time.monotonic() < end:  # the fork server and the worker
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
        family = _descendants(proc.pid)
    time.sleep(3)  # the worker is training now
    family = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    end = time.monotonic() + 15
    try:
        while time.monotonic() < end:
            table = _proc_table()
            alive = {p for p in family if p in table and table[p][1] != "Z"}
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, f"still running 15 s after the driver died: {alive}"
    finally:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["--executor", "slurm"], "unknown executor 'slurm'; accepted: inline, local"),
    (["--executor", "dask://nohostport"], "expected dask://HOST:PORT"),
    (["--executor", "dask-local:0"], "expected dask-local:N with N an int >= 1"),
    (["-j", "0"], "-j/--jobs: expected an int >= 1, got 0"),
    (["--gpu-slots", "0"], "--gpu-slots: expected an int >= 1, got 0"),
    (["--timeout", "-1"], "--timeout: expected seconds in (0, 1e+06], got -1"),
    (["--timeout", "nan"], "--timeout: expected seconds in (0, 1e+06], got nan"),
    (["--timeout", "inf"], "--timeout: expected seconds in (0, 1e+06], got inf"),
    (["--timeout", "3000000"], "--timeout: expected seconds in (0, 1e+06], got 3000000.0"),
    (["--executor", "dask://127.0.0.1:PORT"], "cannot reach the Dask scheduler at tcp://127.0.0"),
])
def test_bad_run_options_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch,
                                                         extra, message):
    monkeypatch.setattr(DaskExecutor, "connect_timeout", 1.0)
    extra = [a.replace("PORT", str(_closed_port())) for a in extra]
    store = tmp_path / "new" / "s.sqlite"
    assert main(["run", str(write(tmp_path, TINY)), "--store", str(store), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("seqbench: error: ") and message in err, err
    assert not store.exists() and not store.parent.exists()


def test_unwritable_store_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"          # a store "inside" a file: unwritable even for root
    blocker.write_text("")
    assert main(["run", str(write(tmp_path, TINY)), "--store", str(blocker / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not writable" in err and blocker.read_text() == ""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert main(["run", str(write(tmp_path, TINY)), "--store", str(locked / "s.sqlite")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "is not writable" in err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_gpu_routing_with_a_faked_device_count():
    """Two GPUs x two slots on an 8-core machine: 4 GPU slots pinned to cuda:0, cuda:0,
    cuda:1, cuda:1 and 4 CPU workers; torch jobs with device auto/cuda go to GPU slots
    with their device set, CPU jobs (and torch jobs asking for the CPU) to CPU workers;
    a GPU slot with no GPU job left takes CPU jobs."""
    slots = plan_slots(None, n_gpus=2, gpu_slots=2, cores=8)
    assert [s.device for s in slots] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"] + [None] * 4
    assert plan_slots(3, n_gpus=1, gpu_slots=2, cores=8) == [Slot("gpu", 0)] * 2 + [Slot("cpu")] * 3
    assert plan_slots(None, n_gpus=0, gpu_slots=4, cores=2) == [Slot("cpu")] * 2

    jobs = parse_suite(TINY.replace('device = "cpu"', ""), "t.toml").jobs()  # lstm: device auto
    cpu_lstm = parse_suite(TINY, "t.toml").jobs()
    mixed = jobs + [j for j in cpu_lstm if j["model"] == "lstm"][:1]
    q = Queues.of(mixed, n_gpus=2)
    assert len(q.gpu) == 2 and all(j["model"] == "lstm" for j in q.gpu)
    assert len(q.cpu) == 3 and sum(j["model"] == "lstm" for j in q.cpu) == 1
    cpu_hashes = {j["hash"] for j in q.cpu}
    taken = q.take(Slot("gpu", 1))
    assert taken["model"] == "lstm" and taken["model_params"]["device"] == "cuda:1"
    assert taken["hash"] not in cpu_hashes       # the hash is the suite's, device "auto"
    first_cpu = q.cpu[0]
    assert q.take(Slot("cpu")) is first_cpu      # CPU workers never take GPU jobs
    assert len(q.gpu) == 1 and len(q.cpu) == 2
    assert q.take(Slot("gpu", 0))["model_params"]["device"] == "cuda:0"
    late = q.take(Slot("gpu", 0))                # no GPU job left: a GPU slot takes CPU work
    assert late["hash"] in cpu_hashes and len(q.cpu) == 1 and len(q.gpu) == 0
    # without a GPU every job is a CPU job, and the device stays as the suite says
    q0 = Queues.of(jobs, n_gpus=0)
    assert len(q0.gpu) == 0 and q0.take(Slot("cpu"))["model_params"] == jobs[0]["model_params"]
    assert LocalExecutor().slots() == plan_slots(None, 0, 1)  # this machine: no CUDA


def test_peak_memory_is_per_job_not_cumulative(tmp_path):
    """A job that touches 300 MiB shows it; the next job in the same persistent worker
    does not inherit it (ru_maxrss would)."""
    text = MIXED.split("[[model]]")[0] + """
[[model]]
name = "test-hungry"
megabytes = [300, 0]
"""
    store = tmp_path / "s.sqlite"
    run(text, store, LocalExecutor(1))
    got = {json.loads(r["model_params"])["megabytes"]: r for r in rows(store)}
    assert got[300]["peak_mem_mb"] - got[0]["peak_mem_mb"] > 250
    with PeakMemory() as m:
        block = np.ones(100 * 2**20 // 8)
        block.sum()
        del block
    heap.release_free_memory()  # as measured() does after each job (seqbench.heap)
    with PeakMemory() as n:
        pass
    assert m.peak_mb - n.peak_mb > 80 and m.method in ("vmhwm", "psutil", "maxrss")
    if m.method != "maxrss":  # what the block itself added, independent of what came before
        assert 90 < m.growth_mb < 130 and n.growth_mb < 10
        prov = {k: json.loads(r["provenance"]) for k, r in got.items()}
        assert prov[300]["peak_growth_mb"] > 280 and prov[0]["peak_growth_mb"] < 50
        assert prov[300]["rss_start_mb"] > 50


def test_progress_bar_reports_failures(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    with Store(store) as s:
        summary = run_suite(parse_suite(MIXED.replace("seconds = 60.0", "seconds = 0.0"), "t"),
                            s, InlineExecutor(), progress="bar")
    out = capsys.readouterr().out
    assert summary["failed"] == 1 and "failed: test-raise on jane-recall" in out


@pytest.mark.slow
def test_cli_dask_local_cluster_for_the_run(tmp_path, capsys):
    """--executor dask-local:2 starts a LocalCluster for the run, gives the local
    executor's results, and shuts it down."""
    suite = write(tmp_path, TINY)
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    assert main(["run", str(suite), "--store", str(a), "--executor", "dask-local:2", "-q"]) == 0
    assert main(["run", str(suite), "--store", str(b), "-j", "2", "-q"]) == 0
    assert rows(a, RESULT_COLS) == rows(b, RESULT_COLS) and len(rows(a)) == 4


def test_a_dask_scheduler_without_workers_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import logging

    monkeypatch.setattr(DaskExecutor, "connect_timeout", 1.0)
    store = tmp_path / "s.sqlite"
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        address = cluster.scheduler_address
        code = main(["run", str(write(tmp_path, TINY)), "--store", str(store),
                     "--executor", "dask://" + address.removeprefix("tcp://")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert err == (f"seqbench: error: executor dask: the Dask scheduler at {address} has no "
                   f"workers (none joined within 1 s); start some: dask worker {address}")
    assert not store.exists()


def test_dask_workers_get_only_the_driver_plugins_a_job_uses(tmp_path, dask_scheduler,
                                                              monkeypatch):
    """A model registered in the driver from a module the workers cannot import: a suite
    that does not use it runs; a job that uses it fails with an error naming the module."""
    (tmp_path / "driver_only_plugin.py").write_text(
        "from seqbench.models.baseline import ChanceBaseline\n"
        "class DriverOnly(ChanceBaseline):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import driver_only_plugin

    registry.models.register("test-driver-only", driver_only_plugin.DriverOnly)
    try:
        store = tmp_path / "s.sqlite"
        summary = run(TINY, store, make_executor(dask_scheduler))
        assert summary["ok"] == 4
        text = TINY.replace('name = "chance"', 'name = "test-driver-only"')
        summary = run(text, tmp_path / "t.sqlite", make_executor(dask_scheduler))
        got = {r["model"]: r for r in rows(tmp_path / "t.sqlite")}
        error = got["test-driver-only"]["error"]
        assert got["test-driver-only"]["status"] == "failed" and summary["ok"] == 2
        assert error.startswith("SeqbenchError: this Dask worker cannot load the models or "
                                "tasks registered in the driver"), error
        assert "No module named 'driver_only_plugin'" in error
    finally:
        registry.models._extra.pop("test-driver-only", None)


def test_an_error_without_a_message_still_says_what_happened():
    from seqbench.runner import failure_text

    def boom(exc):
        try:
            raise exc
        except BaseException as caught:  # noqa: BLE001
            return failure_text(caught).splitlines()[0]

    assert boom(MemoryError()) == "MemoryError: out of memory"
    assert boom(RuntimeError()) == "RuntimeError: (no message)"
    assert boom(ValueError("bad p")) == "ValueError: bad p"


def test_a_cuda_device_this_machine_lacks_is_refused_before_anything_runs(tmp_path, capsys,
                                                                         monkeypatch):
    """Run here, each such job would only fail: one line, exit 2, no store; "auto" runs
    on the CPU. A machine with one GPU refuses cuda:1 but not cuda:0."""
    from seqbench import executors

    store = tmp_path / "s.sqlite"
    text = TINY.replace('device = "cpu"', 'device = "cuda"')
    monkeypatch.setattr(executors, "cuda_device_count", lambda: 0)
    for executor in ("inline", "local", "dask-local:1"):
        assert main(["run", str(write(tmp_path, text)), "--store", str(store),
                     "--executor", executor]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("seqbench: error: model 'lstm' asks for device 'cuda', but torch sees "
                       "no CUDA device on this machine; use device = \"auto\" (a GPU where "
                       "there is one, else the CPU) or \"cpu\", or a Dask cluster with GPU "
                       "workers"), err
        assert not store.exists()
    monkeypatch.setattr(executors, "cuda_device_count", lambda: 1)
    with pytest.raises(SeqbenchError, match=r"device 'cuda:1', but torch sees 1 CUDA device "
                                            r"\(cuda:0\.\.cuda:0\)"):
        executors.check_cuda_jobs(parse_suite(TINY.replace('device = "cpu"',
                                                           'device = "cuda:1"'), "t").jobs())
    executors.check_cuda_jobs(parse_suite(text, "t").jobs())  # cuda:0 exists there


def test_cuda_jobs_already_in_the_store_do_not_block_a_rerun(tmp_path, capsys, monkeypatch):
    from seqbench import executors
    from seqbench.runner import stopped_record

    store = tmp_path / "s.sqlite"
    text = TINY.replace('device = "cpu"', 'device = "cuda"')
    monkeypatch.setattr(executors, "cuda_device_count", lambda: 0)
    suite = parse_suite(text, "t.toml")
    with Store(store) as s:  # every job stored (as a GPU machine left it: failed here)
        for job in suite.jobs():
            s.write(stopped_record(job, "failed", "boom", "2026-01-01", 1.0))
    assert main(["run", str(write(tmp_path, text)), "--store", str(store), "-q"]) == 1
    got = capsys.readouterr()
    assert got.err == "" and "ran 0 job(s), 4 already done" in got.out
    assert main(["run", str(write(tmp_path, text)), "--store", str(store), "-q",
                 "--retry-failed"]) == 2  # now they would run here
    assert "asks for device 'cuda'" in capsys.readouterr().err


def test_prepare_job_seeds_the_model_with_the_job_seed():
    """A model whose random_state is left None gets the job's seed (5 and 9 here); one that
    sets random_state keeps it whatever the seed."""
    from seqbench.runner import prepare_job

    text = TINY.replace("seeds = [0, 1]", "seeds = [5, 9]").replace(
        'name = "chance"', 'name = "gru"\nlabel = "gru-fixed"\nrandom_state = 7')
    got = {}
    for job in parse_suite(text, "t.toml").jobs():
        assert job["model_params"]["random_state"] == (7 if job["model"] == "gru" else None)
        *_, model = prepare_job(job, {})
        got[job["model"], job["seed"]] = model.random_state
    assert got == {("lstm", 5): 5, ("lstm", 9): 9, ("gru", 5): 7, ("gru", 9): 7}
