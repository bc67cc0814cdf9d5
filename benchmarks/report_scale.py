"""``seqbench results``, ``report`` and ``compare`` on a large store: wall time and peak memory.

::

    python -m benchmarks.report_scale                      # 5000 rows
    python -m benchmarks.report_scale --rows 20000 --baseline /tmp/sb-base --keep /tmp/scale

The store is a sweep of Jane recall with ``lag_max`` (every row carries a per-lag slice
for each distinct lag in its test split, 75-95 KB of JSON): the task at ``lag=1`` and
``lag_max`` 1200 and 1800, the ``chance`` model and ``ar`` at four ``p``, ``--rows / 10``
seeds each. Its rows are made in two steps:

1. a small real suite (both ``lag_max``, ``chance`` and ``ar`` with ``p=4``, seeds 0 and 1)
   is run by :func:`seqbench.runner.run_suite` into a template store;
2. the large suite's job list is recorded (:meth:`Store.write_suite`) and each of its jobs
   written (:meth:`Store.write`) with the results of the template job of its task setting,
   model and seed parity (job fields, hash and seed its own).

Both stores are kept in the temporary folder (``--store`` names the large one) and reused
when they hold what is asked for; a child process writes them, so that this one stays
small (a forked child's ``ru_maxrss`` counts the pages it shared with its parent).

Each command (``results``; ``report`` into a temporary folder; ``compare`` of the store
with itself) then runs once in a fresh interpreter (``python -m seqbench ...``,
``OMP_NUM_THREADS=1``); the table gives its wall time and peak resident memory (the
child's ``ru_maxrss``). ``--baseline DIR`` runs the commands with ``PYTHONPATH=DIR`` too
(a checkout of another commit, e.g. ``git worktree add /tmp/sb-base HEAD``), alternating
the two, and adds the ratios. ``--keep DIR`` keeps what the commands wrote
(``DIR/current`` and ``DIR/baseline``: ``results.txt``, ``compare.txt``, ``report.txt``
and the ``report/`` folder) for a diff.

With the default 5000 rows on two cores: about a minute the first time (the stores
are written: a 415 MiB file), half a minute after that.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_SEEDS = 2

SUITE = """\
[suite]
name = "{name}"
description = "Jane recall with per-example lags: one slice per distinct lag in every row"
seeds = {seeds}

[data]
n_train = 100
n_valid = 20
n_test = 2000

[[task]]
name = "jane-recall"
lag = 1
lag_max = [1200, 1800]

[[model]]
name = "chance"

[[model]]
name = "ar"
p = {p}
"""


def template_store(path: Path) -> list[dict]:
    """The template suite's records, run into ``path`` if not there yet."""
    from seqbench.runner import make_executor, run_suite
    from seqbench.store import Store
    from seqbench.suite import parse_suite

    suite = parse_suite(SUITE.format(name="scale-template", seeds=list(range(TEMPLATE_SEEDS)),
                                     p=4))
    with Store(path) as store:
        summary = run_suite(suite, store, make_executor("local", 2), log=None)
        if summary["ran"]:
            print(f"template store {path}: ran {summary['ran']} jobs in "
                  f"{summary['wall_s']:.0f} s", flush=True)
        df = store.frame(suite.name)
    if not (df["status"] == "ok").all():
        raise SystemExit(f"template store {path}: a job did not finish ok; remove the file")
    return [{k: _plain(v) for k, v in r.items()} for r in df.to_dict("records")]


def _plain(v):
    """A frame's cell as :meth:`Store.write` takes it (numpy scalars as Python's)."""
    return v.item() if hasattr(v, "item") else v


def scale_store(path: Path, rows: int, templates: list[dict]) -> None:
    """Write the large store (``rows`` rounded down to 10 cells x seeds) unless ``path``
    holds it already."""
    from seqbench.runner import base_record
    from seqbench.store import Store
    from seqbench.suite import canonical_hash, parse_suite

    text = SUITE.format(name="scale", seeds=list(range(max(1, rows // 10))), p=[2, 4, 8, 16])
    suite = parse_suite(text)
    jobs = suite.jobs()
    if path.exists():
        with Store(path, create=False) as store:
            if len(store.statuses()) == len(jobs) and store.suite_text("scale") == text:
                return
        path.unlink()
    by_key = {(r["task_params"]["lag_max"], r["model"], r["seed"]): r for r in templates}
    t0 = time.perf_counter()
    with Store(path) as store:
        store.write_suite(suite.name, suite.path, text, canonical_hash(text), "2000-01-01",
                          jobs=jobs)
        for job in jobs:
            template = by_key[(job["task_params"]["lag_max"], job["model"],
                               job["seed"] % TEMPLATE_SEEDS)]
            store.write({**template, **base_record(job)})
    print(f"wrote {len(jobs)} rows to {path} in {time.perf_counter() - t0:.0f} s "
          f"({path.stat().st_size / 2**20:.0f} MiB)", flush=True)


def build(template: Path, store: Path, rows: int) -> None:
    scale_store(store, rows, template_store(template))


def timed(args: list[str], pythonpath: Path, stdout: Path) -> tuple[float, float]:
    """Run ``python -m seqbench *args`` in a fresh interpreter; its wall time (s) and peak
    resident memory (MiB)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    with stdout.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seqbench", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=stdout.parent)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"seqbench {' '.join(args)} exited {code}; see {stdout}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows of the store (default 5000)")
    parser.add_argument("--store", type=Path, default=None,
                        help="the large store (default: in the temporary folder, by rows)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout whose seqbench runs the same commands, for ratios")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the commands' outputs here (default: removed)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.gettempdir())
    store = (args.store or tmp / f"seqbench-report-scale-{args.rows}.sqlite").resolve()
    # the stores are written by a child: a forked command's ru_maxrss counts the pages it
    # shared with this process, which must stay small
    builder = multiprocessing.get_context("spawn").Process(
        target=build, args=(tmp / "seqbench-report-scale-template.sqlite", store, args.rows))
    builder.start()
    builder.join()
    if builder.exitcode:
        raise SystemExit(f"writing the store {store} failed (exit code {builder.exitcode})")
    with contextlib.closing(sqlite3.connect(store)) as con:
        n = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    sides = {"current": ROOT}
    if args.baseline is not None:
        sides["baseline"] = args.baseline.resolve()
    keep = args.keep or Path(tempfile.mkdtemp(prefix="seqbench-report-scale-"))
    commands = {"results": ["results", "--store", str(store)],
                "report": ["report", "--store", str(store), "--out", "report"],
                "compare": ["compare", str(store), str(store)]}
    print(f"{n} rows ({store.stat().st_size / 2**20:.0f} MiB), {os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}; peak RSS: the child's ru_maxrss")
    head = f"{'command':<9}" + "".join(f"{s + ' s':>14}{s + ' MiB':>14}" for s in sides)
    if len(sides) > 1:
        head += f"{'time ratio':>12}{'RSS ratio':>11}"
    print(head, flush=True)
    try:
        for name, cmd in commands.items():
            line, got = f"{name:<9}", {}
            for side, checkout in sides.items():  # alternating, command by command
                out = keep / side
                out.mkdir(parents=True, exist_ok=True)
                got[side] = timed(cmd, checkout, out / f"{name}.txt")
                line += f"{got[side][0]:>14.1f}{got[side][1]:>14.0f}"
            if len(sides) > 1:
                line += (f"{got['baseline'][0] / got['current'][0]:>11.1f}x"
                         f"{got['baseline'][1] / got['current'][1]:>10.1f}x")
            print(line, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(keep, ignore_errors=True)
    if args.keep is not None:
        print(f"outputs in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
