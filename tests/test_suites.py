"""Every shipped suite validates, and its smallest setting runs: every task entry at its
first (smallest) sweep point against every model entry, on tiny data with tiny budgets.
No job may fail; a pair the model's tags exclude is recorded as skipped."""

from pathlib import Path

import pytest

from seqbench.runner import make_executor
from seqbench.suite import load_suite
from seqbench.testing import QUICK

SUITES = sorted((Path(__file__).parent.parent / "tasks").glob("*.toml"))
TINY = {"n_train": 40, "n_valid": 10, "n_test": 20}


def smallest_jobs(suite):
    """The first grid point of every task entry x the first of every model entry, seed 0."""
    jobs, seen = [], set()
    for job in suite.jobs():
        t_first = next(t for t in suite.tasks if t.label == job["task_label"]).grid[0]
        m_first = next(m for m in suite.models if m.label == job["model_label"]).grid[0]
        key = (job["task_label"], job["model_label"])
        if key in seen or job["seed"] != suite.seeds[0]:
            continue
        if any(job["task_params"][k] != v for k, v in t_first.items()):
            continue
        if any(job["model_params"][k] != v for k, v in m_first.items()):
            continue
        seen.add(key)
        params = {**job["model_params"], **{k: v for k, v in QUICK.items()
                                            if k in job["model_params"]}}
        jobs.append({**job, "data": TINY, "model_params": params})
    return jobs


def test_the_suites_are_there():
    names = {p.stem for p in SUITES}
    assert {"smoke", "longrange", "forecasting", "shapes", "classics"} <= names


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_validates_and_its_smallest_setting_runs(path):
    suite = load_suite(path)
    jobs = smallest_jobs(suite)
    assert len(jobs) == len(suite.tasks) * len(suite.models)
    records = list(make_executor("local", jobs=2).run(jobs))  # two workers, one thread each
    failed = [(r["model"], r["task"], r["error"].splitlines()[0])
              for r in records if r["status"] not in ("ok", "skipped")]
    assert not failed, failed
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["score"] is not None for r in ok)
