"""What every built-in model computes and every task generates, pinned to its ``version``.

A job's hash holds the model's and the task's ``version`` (not their code), so a rerun
reuses a stored result whenever the hash matches. A change that alters a model's results
or a task's data must therefore bump that class's ``version``; otherwise users' stores
silently mix the old code's numbers with the new code's. This test holds each model's
scores on small jobs and each task's data statistics, keyed by version, in
``tests/fingerprints.json``: a change beyond float rounding with the same version fails,
and so does a bumped version whose fingerprint was not rewritten.

After a deliberate change: bump ``version`` on the class, then rewrite the file with
``python tests/test_fingerprints.py --write`` and commit both.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from seqbench import registry
from seqbench.runner import make_executor
from seqbench.suite import parse_suite
from seqbench.testing import QUICK

FILE = Path(__file__).with_name("fingerprints.json")
# one task per kind of data: tokens -> one class, real -> real at every step, tokens ->
# classes at every step, real -> one class
SUITE = """
[suite]
name = "fingerprints"
seeds = [0]
[budget]
device = "cpu"
[data]
n_train = 40
n_valid = 10
n_test = 20
[[task]]
name = "jane-recall"
lag = 2
[[task]]
name = "ar-process"
length = 30
[[task]]
name = "casino"
length = 30
[[task]]
name = "latch"
length = 20
"""
# small budgets, but the HMM's default EM restarts (the restart seeds are part of it)
BUDGET = {k: v for k, v in QUICK.items() if k != "n_init"}
# scores may drift with float rounding (another CPU's kernels) over a few training steps;
# a change of method moves them further
RTOL, ATOL = 1e-3, 1e-6


def builtin(reg) -> list[str]:
    """The registry's names whose classes ship with seqbench (not plugins)."""
    return sorted(n for n in reg.names() if reg.get(n).__module__.startswith("seqbench."))


def model_fingerprints() -> dict[str, dict]:
    """{model: {"version": v, "scores": {task: {metric: value} or "skipped"}}}."""
    names = builtin(registry.models)
    text = SUITE + "".join(f'[[model]]\nname = "{n}"\n' for n in names)
    jobs = []
    for job in parse_suite(text, "fingerprints").jobs():
        params = {**job["model_params"], **{k: v for k, v in BUDGET.items()
                                            if k in job["model_params"]}}
        jobs.append({**job, "model_params": params})
    out = {n: {"version": int(getattr(registry.models.get(n), "version", 1)), "scores": {}}
           for n in names}
    for r in make_executor("local", jobs=1).run(jobs):  # one worker, one torch thread
        assert r["status"] in ("ok", "skipped"), (r["model"], r["task"], r.get("error"))
        out[r["model"]]["scores"][r["task"]] = (
            "skipped" if r["status"] == "skipped"
            else {k: float(v) for k, v in sorted(r["metrics"].items())})
    return out


def _stats(a: np.ndarray) -> list:
    """Exact for integers (their sum and a position-weighted sum), moments for floats."""
    a = np.asarray(a)
    w = np.arange(1, a.size + 1, dtype=np.float64).reshape(a.shape)
    if a.dtype.kind in "biu":
        flat = a.astype(np.int64)
        return [int(flat.sum()), int((flat * w.astype(np.int64)).sum()) % (2**61 - 1)]
    f = np.where(np.isfinite(a), a, 0.0).astype(np.float64)
    return [float(f.sum()), float((f * f).sum()), float((f * w).sum())]


def task_fingerprints() -> dict[str, dict]:
    """{task: {"version": v, "X": stats, "Y": stats, "mask": stats}} of a small train
    split at the task's defaults, seed 0."""
    out = {}
    for name in builtin(registry.tasks):
        cls = registry.tasks.get(name)
        train = cls().splits(0, 16, 4, 4)[0]
        out[name] = {"version": int(getattr(cls, "version", 1)), "X": _stats(train.X),
                     "Y": _stats(train.Y), "mask": _stats(train.mask)}
    return out


def _close(got, want) -> bool:
    if isinstance(got, (list, dict)) or isinstance(want, (list, dict)):
        if type(got) is not type(want) or len(got) != len(want):
            return False
        if isinstance(got, dict):
            return set(got) == set(want) and all(_close(got[k], want[k]) for k in got)
        return all(_close(a, b) for a, b in zip(got, want))
    if isinstance(got, str) or isinstance(want, str) or isinstance(got, int) and isinstance(
            want, int):
        return got == want
    if math.isnan(got) or math.isnan(want):
        return math.isnan(got) and math.isnan(want)
    return math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL)


def _check(kind: str, got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want), (
        f"{kind} {sorted(set(got) ^ set(want))} added or removed: rewrite {FILE.name} "
        f"(python tests/test_fingerprints.py --write)")
    for name, g in got.items():
        w = want[name]
        assert g["version"] == w["version"], (
            f"{kind} {name!r} is at version {g['version']}, its fingerprint at "
            f"{w['version']}: rewrite {FILE.name} (python tests/test_fingerprints.py --write)")
        body = {k: v for k, v in g.items() if k != "version"}
        assert _close(body, {k: v for k, v in w.items() if k != "version"}), (
            f"{kind} {name!r} computes something else at the same version {g['version']}: "
            f"bump its class's `version` (a rerun would reuse results of the old code) and "
            f"rewrite {FILE.name}; now {body}, stored {w}")


def test_models_compute_what_their_version_says():
    _check("model", model_fingerprints(), json.loads(FILE.read_text())["models"])


def test_tasks_generate_what_their_version_says():
    _check("task", task_fingerprints(), json.loads(FILE.read_text())["tasks"])


@pytest.mark.parametrize("change", ["score", "version"])
def test_a_change_without_a_bump_fails(change):
    """The check bites: a moved score at the same version, or a version without its
    fingerprint."""
    want = {"m": {"version": 1, "scores": {"t": {"accuracy": 0.5}}}}
    got = json.loads(json.dumps(want))
    if change == "score":
        got["m"]["scores"]["t"]["accuracy"] = 0.51
        with pytest.raises(AssertionError, match="bump its class's `version`"):
            _check("model", got, want)
    else:
        got["m"]["version"] = 2
        with pytest.raises(AssertionError, match="its fingerprint at 1"):
            _check("model", got, want)
    got = json.loads(json.dumps(want))
    got["m"]["scores"]["t"]["accuracy"] = 0.5 * (1 + RTOL / 10)  # rounding drift passes
    _check("model", got, want)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_fingerprints.py --write")
    FILE.write_text(json.dumps({"models": model_fingerprints(), "tasks": task_fingerprints()},
                               indent=1, sort_keys=True) + "\n")
    print(f"wrote {FILE}")
