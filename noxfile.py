"""nox sessions: `nox -s tests` (quick), `nox -s bench [-- SUITE [seqbench run options]]`,
`nox -s lint`; the long and GPU sessions are opt-in (not run by a bare `nox`).

The sessions that run seqbench (tests, tests-all, bench, perf) install it from this
checkout with the versions pinned in constraints.txt (torch 2.13.0: the CPU build where
pip can find it, see the README), so results are reproducible and installs fast; lint
installs ruff only, and gpu installs no packages: it uses the machine's own torch and
registers this checkout's entry points with an offline `pip install --no-deps --no-index -e .`
into that python (replacing a seqbench installed there).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

CONSTRAINTS = ("-c", "constraints.txt")


def install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite without the slow and GPU tests (what CI runs)."""
    install(session, "test,report,dask")
    session.run("pytest", "-m", "not slow and not gpu", *session.posargs,
                env={"OMP_NUM_THREADS": "1"})


@nox.session(name="tests-all", default=False)
def tests_all(session: nox.Session) -> None:
    """Every test, the slow ones included (GPU tests skip themselves without a GPU)."""
    install(session, "test,report,dask")
    session.run("pytest", *session.posargs)


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """ruff over the package, the tests, the benchmarks and this file."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", "seqbench", "tests", "benchmarks", "noxfile.py")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run a suite (default: the shipped suite smoke) and print its results table.

    `nox -s bench -- longrange --store results/long.sqlite` passes the suite (a shipped
    suite's name or a suite file) and any `seqbench run` options through.
    """
    install(session, "report,dask")
    args = session.posargs or ["smoke"]
    session.run("seqbench", "run", *args)


@nox.session(default=False)
def perf(session: nox.Session) -> None:
    """The performance session: ratios measured side by side (median of repeats), each
    with its target, printed and written to results/perf-cpu-<machine>.md/.json.

    `nox -s perf -- --rows overhead,kalman` picks rows (and updates only those in the
    files); `-- --memory-suites smoke,longrange` adds the longrange memory rows;
    `-- --quick` checks that every row runs; `-- --replace` starts the files afresh.
    """
    install(session, "dask")
    session.run("python", "-m", "benchmarks.perf", *session.posargs,
                env={"OMP_NUM_THREADS": "1"})


@nox.session(venv_backend="none", default=False)
def gpu(session: nox.Session) -> None:
    """On a machine with a CUDA GPU: the GPU tests and the GPU perf rows in one go
    (scripts/gpu_check.sh), with the python3 that holds CUDA torch (no install)."""
    session.run("bash", "scripts/gpu_check.sh", *session.posargs, external=True)
