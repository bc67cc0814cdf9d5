"""nox sessions: `nox -s tests` (quick), `nox -s bench [-- SUITE [seqbench run options]]`,
`nox -s lint`; the long and GPU sessions are opt-in (not run by a bare `nox`).

Every session installs seqbench from this checkout with the versions pinned in
constraints.txt (torch is the CPU build), so results are reproducible and installs fast.
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
    """ruff over the package, the tests and this file."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", "seqbench", "tests", "noxfile.py")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run a suite (default tasks/smoke.toml) and print its results table.

    `nox -s bench -- tasks/longrange.toml --store results/long.sqlite` passes the suite
    file and any `seqbench run` options through.
    """
    install(session, "report,dask")
    args = session.posargs or ["tasks/smoke.toml"]
    session.run("seqbench", "run", *args)
