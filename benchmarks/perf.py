"""seqbench's performance session: ratios measured side by side in one run.

Every figure is a ratio of two timings taken in the same process, in the same run,
alternating the two sides repeat by repeat (A B A B ...) after one untimed warm-up
each, and summarised by the median over the repeats, so a loaded or throttled machine
slows both sides alike. The table gives each ratio with its target and whether it is
met, and is written to ``results/perf-<kind>-<machine>.md`` and ``.json``: the rows
this run measured replace those of the same name there, the others stay, each marked
with the run (date, command, load) that measured it (``--replace`` starts the files
afresh).

Rows (``--rows``, comma-separated; default all CPU rows):

* ``overhead``: ``LSTMModel.fit`` versus a hand-written torch loop with the same
  ``nn.Embedding``/``nn.LSTM``/``nn.Linear``, batch, step count, Adam and clipping, on
  the same data; seqbench evaluates once, at the last step (``eval_every = max_steps``,
  no validation split), the hand loop reads its loss once at the end. Target <= 1.10,
  judged on the whole job; seqbench without its gradient-decay diagnostic is timed as a
  third side, for the split of the overhead (in the row's detail).
* ``kalman``: ``LDSModel(backend="batched")`` versus ``backend="filterpy"`` (filterpy's
  ``KalmanFilter`` and ``rts_smoother`` sequence by sequence) inside the same EM, same
  data and iterations; the fitted parameters must agree to 1e-8. Target >= 20x.
* ``hmm``: ``HiddenMarkov`` versus the same hmmlearn calls made directly (restarts,
  priors, seeds). Target <= 1.05.
* ``parallel``: eight equal CPU jobs through the local executor, 2 workers versus 1.
  Target <= 0.6.
* ``growth``: fit + predict time per job at T = 100, 200, 400, 800 for every family
  (every step scored, so every family's work grows with T; the HMM many-to-one, so it
  runs EM); the exponent of the last doubling, log2(t(800) / t(400)), with the log-log
  fit over all four beside it. Target: within 0.25 of 1. Like every row, it runs with
  freed C heap blocks kept (:mod:`seqbench.heap`), and gives the free memory back after
  each job, as the runner does.
* ``heap``: ``LSTMModel.fit`` at the longrange suite's size (batch 128, hidden 128, T =
  400, 10 steps) in fresh interpreters, with freed C heap blocks kept for reuse
  (:mod:`seqbench.heap`, what the runner does for every job) versus glibc's defaults
  (``SEQBENCH_KEEP_HEAP=0``), alternating; the page faults of each side in the detail.
  Target < 1 (keeping the blocks must pay).
* ``smoke``: ``seqbench run smoke -j 2`` end to end from the command line,
  into a fresh store. Target < 60 s.
* ``memory``: peak resident memory per job family (``run_job``'s per-job VmHWM) on the
  smoke and, with ``--memory-suites smoke,longrange``, the longrange settings (one job
  per family at the task point with the longest sequences, training budgets cut to a
  few steps/iterations: the peak is reached in the first). Reported, no target.
* ``copies`` (memory section; no job may hold more than one copy of its dataset per
  device): per family, the peak RSS growth during ``fit`` divided by the bytes of the
  split (X, Y, mask) on a large synthetic split of real inputs, X (10000, 100, 40)
  float64, each family measured in a fresh interpreter by
  :func:`seqbench.testing.dataset_copies` (configurations ``COPIES_MODELS``: tiny
  training budgets, the LDS in chunks of 250 sequences), the last step scored; for AR
  and the MLP also with every step scored, where the delay-tap design matrix is large,
  and for AR once more with class targets (the logistic regression); then AR, the MLP,
  the LSTM and the HMM on token inputs (X (200000, 100) over 8 tokens), class targets,
  every step scored (the HMM also the last step only).
  Target < 1 extra copy.

GPU rows (``--gpu``, or ``--rows gpu-...``; need CUDA unless ``--device cpu`` is given
to dry-run them): ``gpu-raw`` (cuDNN LSTM/GRU/RNN and a Python-loop LSTM cell, eager
and CUDA-graph captured, one Adam train step on the adding problem, batch 256, T=200,
hidden 128; reference figures measured on an H200), ``gpu-overhead`` (the overhead row on
the GPU), ``gpu-slots`` (16 small LSTM jobs through the local executor: one GPU slot
versus 4), ``gpu-stacked`` (the same jobs one after another versus stacked training
of 16 and 64 members).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CPU_ROWS = ("overhead", "kalman", "hmm", "parallel", "growth", "heap", "smoke", "memory",
            "copies")
GPU_ROWS = ("gpu-raw", "gpu-overhead", "gpu-slots", "gpu-stacked")


# -- plumbing --------------------------------------------------------------------------------
def ensure_builtins() -> None:
    """Register the built-in models and tasks from pyproject.toml when seqbench runs from a
    checkout without being installed (the GPU machine: no entry points there)."""
    import tomllib

    from seqbench import registry

    if "lstm" in registry.models.names():
        return
    import importlib

    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, reg in (("seqbench.models", registry.models), ("seqbench.tasks", registry.tasks)):
        for name, target in eps.get(group, {}).items():
            module, _, attr = target.partition(":")
            try:
                reg.register(name, getattr(importlib.import_module(module), attr))
            except Exception:  # noqa: BLE001 - a family whose dependency is missing here
                pass


def machine(device: str) -> str:
    from seqbench.provenance import cpu_name

    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def side_by_side(fns: dict[str, Callable[[], Any]], repeats: int, sync=None,
                 warmup: bool = True) -> dict[str, float]:
    """Median wall seconds of each function, the functions alternated repeat by repeat
    after one untimed warm-up call each (``warmup=False``: the caller warmed up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values() if warmup else ():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def row(name: str, value: float | None, target: str, met: bool | None, detail: str = "",
        unit: str = "x") -> dict[str, Any]:
    return {"row": name, "value": value, "unit": unit, "target": target, "met": met,
            "detail": detail}


def unavailable(name: str, why: str) -> dict[str, Any]:
    return row(name, None, "", None, f"unavailable: {why}")


# -- data ------------------------------------------------------------------------------------
def recall_data(n: int, T: int, seed: int, V: int = 12, K: int = 10,
                every_step: bool = False):
    """Synthetic recall that every family can take (tokens in, classes out): many-to-one,
    the token at step 1 (mod K) read at the last step; or, with ``every_step``, the
    previous token (mod K) scored at every step, so every family's work grows with T."""
    from seqbench.data import SeqData

    rng = np.random.default_rng(seed)
    X = rng.integers(0, V, size=(n, T))
    if every_step:
        Y = np.concatenate([np.zeros((n, 1), dtype=X.dtype), X[:, :-1] % K], axis=1)
        return SeqData(X, Y, np.ones((n, T), dtype=bool), input_size=V, target_size=K)
    Y = np.full((n, T), -1)
    Y[:, -1] = X[:, 1] % K
    mask = np.zeros((n, T), dtype=bool)
    mask[:, -1] = True
    return SeqData(X, Y, mask, input_size=V, target_size=K)


def adding_data(n: int, T: int, seed: int):
    """The adding problem (Le et al. 2015 form): pairs (value in [0, 1), marker), two
    marked steps, the target the sum of the marked values, read at the last step."""
    from seqbench.data import SeqData

    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, 2), dtype=np.float32)
    X[..., 0] = rng.random((n, T))
    a = rng.integers(0, T // 2, size=n)
    b = rng.integers(T // 2, T, size=n)
    X[np.arange(n), a, 1] = 1.0
    X[np.arange(n), b, 1] = 1.0
    Y = np.zeros((n, T, 1), dtype=np.float32)
    Y[:, -1, 0] = X[np.arange(n), a, 0] + X[np.arange(n), b, 0]
    mask = np.zeros((n, T), dtype=bool)
    mask[:, -1] = True
    return SeqData(X, Y, mask, input_size=2, target_size=1)


def jane_data(n: int):
    """Jane recall at lag 20 (the smoke suite's long setting) when the task is there."""
    try:
        from seqbench import make_task

        return make_task("jane-recall", lag=20, n_names=10).splits(0, n, 10, 10)[0]
    except Exception:  # noqa: BLE001
        return recall_data(n, 30, 0)


# -- overhead ----------------------------------------------------------------------------------
def hand_loop(data, device: str, hidden: int, batch: int, steps: int, lr: float,
              clip: float | None, seed: int = 0) -> float:
    """A minimal torch training loop: the same modules, batches by a per-epoch permutation,
    loss at the scored positions, Adam, clipping; the loss read once at the end."""
    import torch
    from torch import nn

    from seqbench.models.recurrent import _many_to_one

    dev = torch.device(device)
    torch.manual_seed(seed)
    tokens = data.input_kind == "tokens"
    inp = (nn.Embedding(data.input_size, hidden) if tokens
           else nn.Linear(data.input_size, hidden)).to(dev)
    lstm = nn.LSTM(hidden, hidden, batch_first=True).to(dev)
    head = nn.Linear(hidden, data.target_size).to(dev)
    params = [*inp.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    X = torch.as_tensor(data.X, device=dev)
    X = X if tokens else X.float()
    classes = data.target_kind == "classes"
    Y = torch.as_tensor(data.Y, device=dev)
    Y = Y.long() if classes else Y.float()
    M = torch.as_tensor(data.mask, device=dev)
    # many-to-one data (only the last step scored, as in Jane recall and the adding
    # problem): take the last step, as one would by hand; else a boolean mask (which
    # waits for the device on a GPU)
    last_only = _many_to_one(data.mask)
    gen = torch.Generator().manual_seed(seed)
    N = X.shape[0]
    per_epoch = N // batch
    step = 0
    total = torch.zeros((), device=dev)
    while step < steps:
        perm = torch.randperm(N, generator=gen).to(dev)
        for b in range(per_epoch):
            idx = perm[b * batch:(b + 1) * batch]
            h, _ = lstm(inp(X[idx]))
            if last_only:
                out, y = head(h[:, -1]), Y[idx, -1]
            else:
                m = M[idx]
                out, y = head(h[m]), Y[idx][m]
            loss = (nn.functional.cross_entropy(out, y) if classes
                    else nn.functional.mse_loss(out, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += loss.detach()
            step += 1
            if step >= steps:
                break
    return float(total) / steps


def overhead_row(device: str, repeats: int, quick: bool, name: str = "overhead"):
    import torch

    from seqbench.models.recurrent import LSTMModel

    on_gpu = device == "cuda"
    hidden, batch = (128, 256) if on_gpu else (32, 64)
    steps = (300 if on_gpu else 300) if not quick else 20
    data = jane_data(4096 if on_gpu else 2000)
    lr, clip = 0.01, 1.0

    def seqbench_fit(diagnostic: bool = True):
        model = LSTMModel(hidden_size=hidden, batch_size=batch, max_steps=steps,
                          eval_every=steps, patience=1, lr=lr, clip_norm=clip, device=device,
                          random_state=0)
        if not diagnostic:
            model.grad_decay_max_k = 0
        model.fit(data)

    def hand():
        hand_loop(data, device, hidden, batch, steps, lr, clip)

    sync = torch.cuda.synchronize if on_gpu else None
    # the third side, seqbench without its gradient-decay diagnostic, only says how the
    # overhead splits; the target is judged on the whole job
    t = side_by_side({"seqbench": seqbench_fit, "hand": hand,
                      "no diagnostic": lambda: seqbench_fit(False)}, repeats, sync)
    ratio = t["seqbench"] / t["hand"]
    detail = (f"LSTM H={hidden}, batch {batch}, {steps} Adam steps, clip 1, T={data.T}, "
              f"{device}, 1 torch thread; seqbench {t['seqbench']:.3f} s (incl. the "
              f"gradient-decay diagnostic at init; without it {t['no diagnostic']:.3f} s, "
              f"{t['no diagnostic'] / t['hand']:.3f}x), hand loop {t['hand']:.3f} s; "
              f"eval_every=max_steps, no validation split")
    return [row(name, ratio, "<= 1.10", ratio <= 1.10, detail)]


# -- Kalman EM ---------------------------------------------------------------------------------
def lds_data(n: int, T: int, seed: int):
    """A 2-state LDS driven by one input, observed in 2 dimensions (every step scored)."""
    from seqbench.data import SeqData

    rng = np.random.default_rng(seed)
    A = np.array([[0.95, 0.1], [-0.1, 0.9]])
    B = np.array([[0.5], [0.2]])
    C = np.array([[1.0, 0.0], [0.3, 1.0]])
    U = rng.normal(size=(n, T, 1))
    s = np.zeros((n, 2))
    Y = np.zeros((n, T, 2))
    for t in range(T):
        s = s @ A.T + U[:, t] @ B.T + 0.1 * rng.normal(size=(n, 2))
        Y[:, t] = s @ C.T + 0.2 * rng.normal(size=(n, 2))
    return SeqData(U.astype(np.float32), Y.astype(np.float32), np.ones((n, T), dtype=bool),
                   input_size=1, target_size=2)


def kalman_row(repeats: int, quick: bool):
    try:
        import filterpy  # noqa: F401

        from seqbench.models.kalman import LDSModel
    except Exception as exc:  # noqa: BLE001
        return [unavailable("kalman", f"{type(exc).__name__}: {exc}")]
    n, T, iters = (40, 50, 3) if quick else (50, 100, 5)
    data = lds_data(n, T, 0)
    fitted = {}

    def fit(backend):
        def go():
            fitted[backend] = LDSModel(n_states=2, max_iter=iters, tol=0.0, backend=backend,
                                       random_state=0).fit(data)
        return go

    t = side_by_side({"batched": fit("batched"), "filterpy": fit("filterpy")},
                     max(1, repeats // 2) if not quick else 1)
    diff = fitted["batched"].params_.max_abs_diff(fitted["filterpy"].params_)
    speed = t["filterpy"] / t["batched"]
    return [row("kalman", speed, ">= 20 (params to 1e-8)", speed >= 20 and diff <= 1e-8,
                f"EM, {iters} iterations, {n} sequences x {T} steps, 2 states; batched "
                f"{t['batched']:.3f} s, filterpy {t['filterpy']:.3f} s; max |param diff| "
                f"{diff:.1e}")]


# -- HMM ---------------------------------------------------------------------------------------
def hmm_data(n: int, T: int, seed: int, S: int = 3, V: int = 6):
    """Tokens from a random 3-state HMM, as a forecasting task (Y[t] = X[t+1])."""
    from seqbench.data import SeqData

    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S) * 0.5, size=S) * 0.3 + np.eye(S) * 0.7
    E = rng.dirichlet(np.ones(V) * 0.5, size=S)
    z = rng.integers(0, S, size=n)
    X = np.zeros((n, T + 1), dtype=np.int64)
    for t in range(T + 1):
        X[:, t] = [rng.choice(V, p=E[k]) for k in z]
        z = np.array([rng.choice(S, p=P[k]) for k in z])
    mask = np.ones((n, T), dtype=bool)
    return SeqData(X[:, :T], X[:, 1:], mask, input_size=V, target_size=V, forecasting=True)


def hmm_row(repeats: int, quick: bool):
    try:
        from hmmlearn import hmm as hl

        from seqbench.models.hmm import HiddenMarkov, restart_seed
    except Exception as exc:  # noqa: BLE001
        return [unavailable("hmm", f"{type(exc).__name__}: {exc}")]
    n, T = (50, 50) if quick else (200, 100)
    data = hmm_data(n, T, 0)
    params = dict(n_states=4, n_init=2, n_iter=20, tol=0.0, pseudocount=0.1, random_state=0)
    out = {}

    def wrapper():
        out["seqbench"] = HiddenMarkov(mode="forecast", **params).fit(data)

    def direct():
        # what the forecast mode runs: the training prefixes (the whole rows here) stacked
        # in hmmlearn's layout, n_init restarts seeded by restart_seed, the best kept
        prior = 1.0 + params["pseudocount"]
        flat = data.X.reshape(-1, 1)
        lengths = np.full(n, T)
        best, best_ll = None, -np.inf
        for r in range(params["n_init"]):
            m = hl.CategoricalHMM(n_components=params["n_states"], n_features=data.input_size,
                                  emissionprob_prior=prior, startprob_prior=prior,
                                  transmat_prior=prior, random_state=restart_seed(0, r),
                                  n_iter=params["n_iter"],
                                  tol=params["tol"], implementation="scaling")
            m.fit(flat, lengths)
            ll = m.score(flat, lengths)
            if ll > best_ll:
                best, best_ll = m, ll
        out["hmmlearn"] = best

    t = side_by_side({"seqbench": wrapper, "hmmlearn": direct}, repeats if not quick else 1)
    same = np.allclose(out["seqbench"].hmms_[0].transmat_, out["hmmlearn"].transmat_,
                       atol=1e-12)
    ratio = t["seqbench"] / t["hmmlearn"]
    return [row("hmm", ratio, "<= 1.05", ratio <= 1.05,
                f"forecast mode, CategoricalHMM 4 states, 2 restarts x 20 EM iterations, "
                f"{n} x {T} tokens; seqbench {t['seqbench']:.3f} s, hmmlearn "
                f"{t['hmmlearn']:.3f} s; same fitted transitions: {same}")]


# -- parallel efficiency ---------------------------------------------------------------------
SUITE_8 = """
[suite]
name = "perf-parallel"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
[data]
n_train = 1000
n_valid = 100
n_test = 100
[budget]
max_steps = {steps}
device = "cpu"
[[task]]
name = "jane-recall"
lag = 4
[[model]]
name = "lstm"
hidden_size = 32
eval_every = {steps}
"""


def run_jobs(jobs, executor) -> float:
    from seqbench.runner import run_suite  # noqa: F401 - same path the CLI takes

    t0 = time.perf_counter()
    records = list(executor.run(jobs))
    wall = time.perf_counter() - t0
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs not ok: {bad[0]['status']}: {bad[0].get('error')}")
    return wall


def parallel_row(repeats: int, quick: bool):
    from seqbench.runner import make_executor
    from seqbench.suite import parse_suite

    jobs = parse_suite(SUITE_8.replace("{steps}", "20" if quick else "100")).jobs()
    t = side_by_side({"1 worker": lambda: run_jobs(jobs, make_executor("local", jobs=1)),
                      "2 workers": lambda: run_jobs(jobs, make_executor("local", jobs=2))},
                     max(1, repeats // 2) if not quick else 1)
    ratio = t["2 workers"] / t["1 worker"]
    return [row("parallel", ratio, "<= 0.60", ratio <= 0.60,
                f"8 LSTM jobs (jane-recall, hidden 32) through the local executor; 1 worker "
                f"{t['1 worker']:.2f} s, 2 workers {t['2 workers']:.2f} s (worker start "
                f"included); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")]


# -- growth --------------------------------------------------------------------------------
GROWTH = {
    "lstm": {"hidden_size": 32, "batch_size": 32, "max_steps": 10, "eval_every": 10,
             "device": "cpu"},
    "gru": {"hidden_size": 32, "batch_size": 32, "max_steps": 10, "eval_every": 10,
            "device": "cpu"},
    "rnn": {"hidden_size": 32, "batch_size": 32, "max_steps": 10, "eval_every": 10,
            "device": "cpu"},
    "irnn": {"hidden_size": 32, "batch_size": 32, "max_steps": 10, "eval_every": 10,
             "device": "cpu"},
    "ar": {},
    "mlp": {"max_iter": 5},
    "lds": {"n_states": 4, "max_iter": 3, "tol": 0.0},
    # EM (generative mode: one HMM per class) needs the many-to-one data; with every step
    # scored the HMM would count transitions (supervised mode) instead of running EM
    "hmm": {"n_states": 4, "n_init": 1, "n_iter": 5, "tol": 0.0, "mode": "generative"},
}


def growth_row(repeats: int, quick: bool):
    from seqbench import heap, registry

    lengths = (25, 50, 100, 200) if quick else (100, 200, 400, 800)
    n = 64 if quick else 256
    every = {T: recall_data(n, T, 0, every_step=True) for T in lengths}
    last = {T: recall_data(n, T, 0) for T in lengths}
    rows = []
    for family, params in GROWTH.items():
        datas = last if family == "hmm" else every
        try:
            cls = registry.models.get(family)
        except Exception as exc:  # noqa: BLE001
            rows.append(unavailable(f"growth {family}", str(exc).splitlines()[0]))
            continue
        try:
            fns = {}
            for T, d in datas.items():
                def job(d=d, cls=cls, params=params):
                    m = cls(**params).fit(d)
                    m.predict(d.X)
                    heap.release_free_memory()  # as the runner does after each job
                fns[T] = job
            t = side_by_side(fns, 1 if quick else max(1, repeats // 2))
            slope = float(np.polyfit(np.log(lengths), np.log([t[T] for T in lengths]), 1)[0])
            # the exponent of the last doubling: fixed costs (start-up, the gradient-decay
            # diagnostic, capped at 100 steps) weigh less there
            tail = float(np.log2(t[lengths[-1]] / t[lengths[-2]]))
            rows.append(row(f"growth {family}", tail, "|e - 1| <= 0.25 (last doubling)",
                            abs(tail - 1) <= 0.25,
                            f"log-log fit over all lengths {slope:.2f}; s per job at T="
                            + ", ".join(f"{T}: {t[T]:.3f}" for T in lengths)
                            + f" ({n} sequences, "
                            + ("last step scored)" if datas is last else "every step scored)"),
                            unit="exp"))
        except Exception as exc:  # noqa: BLE001
            rows.append(unavailable(f"growth {family}", f"{type(exc).__name__}: {exc}"))
    return rows


# -- smoke suite from the command line ---------------------------------------------------
SMOKE_STORE: list[Path] = []  # the smoke row's store, read again by the memory rows


# -- heap ----------------------------------------------------------------------------------
HEAP_CHILD = """
import resource, sys, time
import torch
torch.set_num_threads(1)
from seqbench import heap
kept = heap.keep_freed_blocks()
sys.path.insert(0, sys.argv[1])
from benchmarks.perf import recall_data
from seqbench.models.recurrent import LSTMModel
B, H, T, steps = (int(a) for a in sys.argv[2:6])
data = recall_data(4 * B, T, 0)
fit = lambda n: LSTMModel(hidden_size=H, batch_size=B, max_steps=n, eval_every=n,
                          device="cpu", random_state=0).fit(data)
fit(1)
heap.release_free_memory()
faults, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
fit(steps)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
      int(kept))
"""


def heap_row(repeats: int, quick: bool):
    B, H, T, steps = (16, 16, 50, 3) if quick else (128, 128, 400, 10)
    got: dict[str, list[tuple[float, int, int]]] = {"kept": [], "default": []}
    for _ in range(1 if quick else max(3, repeats // 2)):
        for side, value in (("kept", "1"), ("default", "0")):
            proc = subprocess.run([sys.executable, "-c", HEAP_CHILD, str(ROOT), str(B), str(H),
                                   str(T), str(steps)], capture_output=True, text=True,
                                  env={**os.environ, "SEQBENCH_KEEP_HEAP": value,
                                       "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                return [unavailable("heap", f"child failed ({proc.returncode}): {tail[0]}")]
            secs, faults, took = proc.stdout.split()
            got[side].append((float(secs), int(faults), int(took)))
    if not all(k for _, _, k in got["kept"]):
        return [unavailable("heap", "the C library is not glibc, or it refused the "
                            "thresholds: nothing to compare")]
    t = {k: statistics.median(s for s, _, _ in v) for k, v in got.items()}
    f = {k: statistics.median(n for _, n, _ in v) for k, v in got.items()}
    ratio = t["kept"] / t["default"]
    return [row("heap", ratio, "< 1", ratio < 1,
                f"LSTMModel.fit, tokens, batch {B}, hidden {H}, T={T}, {steps} steps, 1 torch "
                f"thread, fresh interpreters: freed C heap blocks kept {t['kept']:.2f} s "
                f"({f['kept']:.0f} page faults), glibc's defaults {t['default']:.2f} s "
                f"({f['default']:.0f} page faults)")]


def smoke_row(quick: bool):
    exe = Path(sys.executable).with_name("seqbench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "import sys; from seqbench.cli import main; "
                                            "sys.exit(main())"]
    tmp = Path(tempfile.mkdtemp(prefix="seqbench-perf-"))
    store = tmp / "smoke.sqlite"
    args = [*cmd, "run", "smoke", "--store", str(store), "-j", "2",
            "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return [unavailable("smoke", f"seqbench run failed ({proc.returncode}): {tail[0]}")]
    SMOKE_STORE.append(store)
    return [row("smoke", wall, "< 60 s", wall < 60,
                f"`seqbench run smoke -j 2 -q`, fresh store, start-up included; "
                f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", unit="s")]


# -- memory ---------------------------------------------------------------------------------
CUT = {"max_steps": 3, "eval_every": 3, "max_iter": 2, "n_iter": 2, "n_init": 1}


def _data_mib(task, data: dict) -> float:
    """The job's three splits as arrays (X, Y, mask), from one sampled sequence."""
    one = task.sample(1, 0)
    per = one.X.nbytes + one.Y.nbytes + one.mask.nbytes
    return per * (data["n_train"] + data["n_valid"] + data["n_test"]) / 2**20


def _memory_table(name: str, records, registry, note: str):
    per_family: dict[str, dict] = {}
    for r in records:
        fam = r["model"]
        if r["status"] != "ok":
            per_family.setdefault(fam, {"peak": None, "err": f"{r['status']}: {r.get('error')}"})
            continue
        cur = per_family.get(fam)
        if cur is None or cur.get("peak") is None or r["peak_mem_mb"] > cur["peak"]:
            per_family[fam] = {"peak": r["peak_mem_mb"], "rec": r}
    rows = []
    for fam, info in sorted(per_family.items()):
        if info.get("peak") is None:
            rows.append(unavailable(f"memory {name} {fam}", info["err"].splitlines()[0][:150]))
            continue
        r = info["rec"]
        task = registry.tasks.get(r["task"])(**r["task_params"])
        sweep = ",".join(f"{k}={v}" for k, v in (r.get("task_sweep") or {}).items())
        rows.append(row(f"memory {name} {fam}", info["peak"], "report", None,
                        f"largest per-job peak RSS (VmHWM; interpreter and libraries "
                        f"included, about 300 MiB with torch) on {r['task_label']}({sweep}); "
                        f"the job's data {_data_mib(task, r['data']):.1f} MiB{note}",
                        unit="MiB"))
    return rows


def memory_rows(suites: list[str], quick: bool):
    import sqlite3

    from seqbench import registry
    from seqbench.runner import make_executor
    from seqbench.suite import load_suite

    rows = []
    for name in suites:
        if name == "smoke" and SMOKE_STORE and not quick:
            with sqlite3.connect(SMOKE_STORE[-1]) as con:
                con.row_factory = sqlite3.Row
                records = [dict(r) for r in con.execute("SELECT * FROM runs")]
            for r in records:
                for k in ("task_params", "task_sweep", "data"):
                    r[k] = json.loads(r[k]) if isinstance(r[k], str) else r[k]
            rows += _memory_table(name, records, registry, "; every job of the smoke row")
            continue
        suite = load_suite(name)
        all_jobs = suite.jobs()
        jobs = [j for j in all_jobs if j["seed"] == all_jobs[0]["seed"]]
        # one job per family: the task point with the longest sequences, budgets cut
        T_of: dict[str, int] = {}
        pick: dict[str, tuple[int, dict]] = {}
        for j in jobs:
            key = json.dumps([j["task"], j["task_params"]], sort_keys=True, default=str)
            if key not in T_of:
                T_of[key] = registry.tasks.get(j["task"])(**j["task_params"]).sample(1, 0).T
            if j["model"] not in pick or T_of[key] > pick[j["model"]][0]:
                pick[j["model"]] = (T_of[key], j)
        run = []
        for _, j in pick.values():
            defaults = registry.models.get(j["model"])().get_params()
            params = {**j["model_params"], **{k: v for k, v in CUT.items() if k in defaults}}
            j = {**j, "model_params": params}
            if quick:
                j["data"] = {"n_train": 200, "n_valid": 20, "n_test": 20}
            run.append(j)
        records = list(make_executor("local", jobs=1).run(run))
        rows += _memory_table(name, records, registry,
                              "; training budget cut to a few steps/iterations (the peak "
                              "comes in the first)" + ("; data cut (--quick)" if quick else ""))
    return rows


COPIES_NOTES = {
    "hmm": "; EM starts from k-means on a sample of 65,536 steps (scikit-learn's KMeans "
           "copies and centres its input: a fixed cost, not a share of the split)",
    "mlp synced": "; the delay-tap features (p·D + p-1 columns per scored position, "
                      "{design:.2f} splits here if built whole) are built one mini-batch "
                      "at a time",
    "ar synced": "; the normal equations are summed over blocks of positions: the "
                     "design matrix ({design:.2f} splits) is never built whole",
    "ar synced classes": "; three classes, 3 L-BFGS iterations: loss and gradient summed "
                         "over blocks at every evaluation, the first 32 MiB of blocks kept; "
                         "the design matrix ({design:.2f} splits) is never built whole",
    "ar synced classes tokens": "; 8 tokens, three classes, 3 L-BFGS iterations; the sparse "
                                "design matrix ({design:.2f} splits) is never built whole",
    "mlp synced classes tokens": "; 8 tokens, three classes; no index of the positions (every "
                                 "step scored), an int32 epoch order; the sparse design "
                                 "matrix would be {design:.2f} splits",
}


def copies_rows(quick: bool):
    """``dataset copies <family>``: fit's extra copies of its split (see the docstring)."""
    from seqbench.testing import COPIES_MODELS, dataset_copies

    n, T, D = (500, 100, 40) if quick else (10000, 100, 40)
    cases = [(fam, "many-to-one", "real", "real") for fam in COPIES_MODELS]
    cases += [("ar", "many-to-many-synced", "real", "real"),
              ("mlp", "many-to-many-synced", "real", "real"),
              ("ar", "many-to-many-synced", "classes", "real"),
              ("ar", "many-to-many-synced", "classes", "tokens"),
              ("mlp", "many-to-many-synced", "classes", "tokens"),
              ("lstm", "many-to-many-synced", "classes", "tokens"),
              ("hmm", "many-to-many-synced", "classes", "tokens"),
              ("hmm", "many-to-one", "classes", "tokens")]
    rows = []
    for fam, shape, targets, inputs in cases:
        name = fam if shape == "many-to-one" else f"{fam} synced"
        name += " classes" if targets == "classes" else ""
        name += " tokens" if inputs == "tokens" else ""
        size = dict(n=20 * n, T=T, D=8) if inputs == "tokens" else dict(n=n, T=T, D=D)
        try:
            r = dataset_copies(fam, COPIES_MODELS[fam], shape=shape, targets=targets,
                               inputs=inputs, **size)
        except Exception as exc:  # noqa: BLE001 - one family must not hide the others
            rows.append(unavailable(f"dataset copies {name}",
                                    f"{type(exc).__name__}: {exc}".splitlines()[0][:150]))
            continue
        p = COPIES_MODELS[fam].get("p", 0)
        if inputs == "tokens":  # CSR: a float64 value and an int32 index per tap
            design = size["n"] * T * p * 12 / r["split_bytes"]
            x = f"X {size['n']}x{T} int64 tokens"
        else:
            design = n * T * (p * D + p - 1) * 8 / r["split_bytes"]  # every step scored
            x = f"X {n}x{T}x{D} float64"
        note = COPIES_NOTES.get(name, "").format(design=design)
        rows.append(row(f"dataset copies {name}", r["fit_copies"], "< 1 extra copy",
                        r["fit_copies"] < 1,
                        f"peak RSS growth in fit {r['fit_growth'] / 2**20:.0f} MiB / split "
                        f"{r['split_bytes'] / 2**20:.0f} MiB ({x}, "
                        f"{'last step' if shape == 'many-to-one' else 'every step'} scored); "
                        f"predict {r['predict_copies']:.2f}" + note, unit="copies"))
    return rows


# -- GPU ------------------------------------------------------------------------------------
def _train_step_timer(kind: str, device: str, T: int, batch: int = 256, hidden: int = 128,
                      graph: bool = False, steps: int = 20):
    """ms per Adam train step of raw torch on the adding problem: ``kind`` lstm, gru or rnn
    (fused cuDNN), or ``cell`` (a Python loop over ``nn.LSTMCell``)."""
    import torch
    from torch import nn

    dev = torch.device(device)
    torch.manual_seed(0)
    d = adding_data(batch, T, 0)
    x = torch.as_tensor(d.X, device=dev)
    y = torch.as_tensor(d.Y[:, -1], device=dev)
    if kind == "cell":
        core = nn.LSTMCell(2, hidden).to(dev)
    else:
        core = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](2, hidden,
                                                                   batch_first=True).to(dev)
    head = nn.Linear(hidden, 1).to(dev)
    params = [*core.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, capturable=graph)

    def step():
        if kind == "cell":
            h = x.new_zeros(batch, hidden)
            c = x.new_zeros(batch, hidden)
            for t in range(T):
                h, c = core(x[:, t], (h, c))
        else:
            h = core(x)[0][:, -1]
        loss = nn.functional.mse_loss(head(h), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        opt.zero_grad(set_to_none=True)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=side):  # the warm-up stream: its cuBLAS state is made
            step()
        run = g.replay
        run()  # the first replay uploads the graph: untimed
    else:
        def run():
            opt.zero_grad(set_to_none=True)
            step()
        for _ in range(3):
            run()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    sync()
    return (time.perf_counter() - t0) / steps * 1e3


def gpu_raw_rows(device: str, quick: bool):
    T = 20 if quick else 200
    ref = {"lstm": 2.6, "gru": 3.2, "rnn": 2.3}
    rows = []
    for kind in ("lstm", "gru", "rnn"):
        ms = _train_step_timer(kind, device, T)
        rows.append(row(f"gpu-raw {kind}", ms, f"ref {ref[kind]} ms (H200)", None,
                        f"fused {kind}, batch 256, T={T}, hidden 128, Adam, fp32", unit="ms"))
    ms = _train_step_timer("cell", device, T, steps=5)
    rows.append(row("gpu-raw lstm-cell loop", ms, "ref 103 ms (H200)", None,
                    f"Python loop over nn.LSTMCell, T={T}", unit="ms"))
    if device == "cuda":
        ms = _train_step_timer("cell", device, T, graph=True)
        rows.append(row("gpu-raw lstm-cell graph", ms, "ref 14 ms (H200)", None,
                        f"the same, captured in a CUDA graph, T={T}", unit="ms"))
    T2 = 50 if quick else 1000
    ms = _train_step_timer("lstm", device, T2, steps=10)
    rows.append(row(f"gpu-raw lstm T={T2}", ms, "ref 11.5 ms (H200)", None,
                    "fused LSTM, batch 256, hidden 128", unit="ms"))
    return rows


SMALL = {"hidden_size": 64, "batch_size": 256, "lr": 0.001, "patience": 1}


def _small_jobs_suite(n_jobs: int, steps: int, T: int) -> str:
    seeds = ", ".join(str(s) for s in range(n_jobs))
    return f"""
[suite]
name = "perf-gpu-small"
seeds = [{seeds}]
[data]
n_train = 2560
n_valid = 256
n_test = 256
[budget]
max_steps = {steps}
[[task]]
name = "adding"
length = {T}
[[model]]
name = "lstm"
hidden_size = 64
batch_size = 256
lr = 0.001
eval_every = {steps}
"""


def gpu_slots_rows(device: str, quick: bool, slots: int = 4):
    from seqbench.executors import LocalExecutor
    from seqbench.suite import parse_suite

    n_jobs, steps, T = (4, 10, 20) if quick else (16, 300, 200)
    jobs = parse_suite(_small_jobs_suite(n_jobs, steps, T)).jobs()
    n_gpus = 1 if device == "cuda" else 0
    if not n_gpus:  # dry run on the CPU: CPU workers stand in for the GPU slots
        one, many = LocalExecutor(1), LocalExecutor(slots)
    else:
        one = LocalExecutor(None, gpu_slots=1, n_gpus=1)
        many = LocalExecutor(None, gpu_slots=slots, n_gpus=1)
    # warm up once, tiny: the fork server (torch imported once), CUDA and cuDNN
    run_jobs(parse_suite(_small_jobs_suite(1, 5, T)).jobs(), many)
    t = side_by_side({"1 slot": lambda: run_jobs(jobs, one),
                      f"{slots} slots": lambda: run_jobs(jobs, many)}, 1, warmup=False)
    per = t["1 slot"] / (n_jobs * steps) * 1e3
    speed = t["1 slot"] / t[f"{slots} slots"]
    return [row(f"gpu-slots {slots}", speed, ">= 1.8", speed >= 1.8,
                f"{n_jobs} LSTM jobs (adding T={T}, hidden 64, batch 256, {steps} steps) "
                f"through the local executor: 1 GPU slot {t['1 slot']:.2f} s "
                f"({per:.2f} ms per job-step, sampling and evaluation included), {slots} "
                f"slots {t[f'{slots} slots']:.2f} s")]


def gpu_stacked_rows(device: str, quick: bool, sizes=(16, 64)):
    import torch

    from seqbench.models import stacked as st
    from seqbench.models.recurrent import LSTMModel
    from seqbench.models.stacked import fit_stacked

    steps, T, n = (10, 20, 512) if quick else (300, 200, 2560)
    if quick:
        sizes = (2, 4)
    params = {**SMALL, "max_steps": steps, "eval_every": steps, "device": device}
    t0 = time.perf_counter()
    datas = [adding_data(n, T, s) for s in range(max(sizes))]
    print(f"    gpu-stacked: data {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    sync = torch.cuda.synchronize if device == "cuda" else None
    n_alone = 4

    def lstm(seed, max_steps=steps):
        # seeds and same-shape configurations: four learning rates among the members
        m = LSTMModel(random_state=seed, **{**params, "max_steps": max_steps,
                                            "lr": 0.01 * (1 + seed % 4) / 2})
        m.grad_decay_max_k = 0  # the gradient-decay diagnostic off on both sides
        return m

    def alone():
        for s in range(n_alone):
            lstm(s).fit(datas[s])

    def progress(name, fn):
        def timed():  # each side's time in the log as it ends (side_by_side syncs around)
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            print(f"    gpu-stacked: {name} {time.perf_counter() - t0:.2f} s", file=sys.stderr,
                  flush=True)
        return timed

    def stacked(M, recurrence="auto"):
        saved, st.RECURRENCE = st.RECURRENCE, recurrence
        try:
            fit_stacked([lstm(s) for s in range(M)], datas[:M])
        finally:
            st.RECURRENCE = saved

    fns = {"alone": progress(f"{n_alone} jobs one after another", alone)}
    for M in sizes:
        fns[M] = progress(f"{M} stacked", lambda M=M: stacked(M))
    # the largest stack again with autograd through the step equations: what the fused
    # cell kernels and the written-out backward gain (the same where they are not found)
    big = max(sizes)
    fns["autograd"] = progress(f"{big} stacked, autograd", lambda: stacked(big, "autograd"))
    fused = st.fused_cell(torch.device(device))
    how = ("torch's fused LSTM cell kernels, backward written out" if fused
           else "autograd through the step equations (no fused cell kernels here)")
    # warm up (cuDNN, cuBLAS, the graph machinery) with short runs, not whole ones
    progress("warm-up", lambda: (lstm(0, 5).fit(datas[0]),
                                 fit_stacked([lstm(s, 5) for s in range(2)], datas[:2],
                                             warmup=2)))()
    t = side_by_side(fns, 1, sync, warmup=False)
    per_alone = t["alone"] / (n_alone * steps) * 1e3
    rows = []
    for M in sizes:
        per = t[M] / (M * steps) * 1e3
        speed = per_alone / per
        target = ">= 3.5" if M == 64 else "ref 1.7 (H200)" if M == 16 else "report"
        rows.append(row(f"gpu-stacked {M}", speed, target, speed >= 3.5 if M == 64 else None,
                        f"LSTM hidden 64, batch 256, adding T={T}, {steps} steps, members "
                        f"differ in seed and lr (4 values), whole fit "
                        f"(data to the device, training, one evaluation; the gradient-decay "
                        f"diagnostic off on both sides): one after another "
                        f"{per_alone:.2f} ms per job-step, stacked {per:.3f} ms per "
                        f"model-step; recurrence: {how}"))
    per = t["autograd"] / (big * steps) * 1e3
    rows.append(row(f"gpu-stacked {big} autograd", per_alone / per, "report", None,
                    f"the same {big} members with autograd through the step equations: "
                    f"{per:.3f} ms per model-step; the default recurrence runs at "
                    f"{t['autograd'] / t[big]:.2f}x its speed ({how})"))
    return rows


# -- driver ---------------------------------------------------------------------------------
def run_rows(rows: list[str], args) -> list[dict[str, Any]]:
    out = []
    for name in rows:
        t0 = time.perf_counter()
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            if name == "overhead":
                got = overhead_row("cpu", args.repeats, args.quick)
            elif name == "kalman":
                got = kalman_row(args.repeats, args.quick)
            elif name == "hmm":
                got = hmm_row(args.repeats, args.quick)
            elif name == "parallel":
                got = parallel_row(args.repeats, args.quick)
            elif name == "growth":
                got = growth_row(args.repeats, args.quick)
            elif name == "heap":
                got = heap_row(args.repeats, args.quick)
            elif name == "smoke":
                got = smoke_row(args.quick)
            elif name == "memory":
                got = memory_rows(args.memory_suites.split(","), args.quick)
            elif name == "copies":
                got = copies_rows(args.quick)
            elif name == "gpu-raw":
                got = gpu_raw_rows(args.device, args.quick)
            elif name == "gpu-overhead":
                got = overhead_row(args.device, args.repeats, args.quick, "gpu-overhead")
            elif name == "gpu-slots":
                got = gpu_slots_rows(args.device, args.quick)
            elif name == "gpu-stacked":
                got = gpu_stacked_rows(args.device, args.quick)
            else:
                raise SystemExit(f"unknown row {name!r}; known: {', '.join(CPU_ROWS + GPU_ROWS)}")
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken row must not hide the others
            traceback.print_exc()
            got = [unavailable(name, f"{type(exc).__name__}: {exc}".splitlines()[0])]
        for r in got:
            r["seconds"] = round(time.perf_counter() - t0, 1)
        out.extend(got)
        for r in got:
            print(f"{format_line(r)}  [{r['seconds']} s]", file=sys.stderr, flush=True)
    return out


def fmt_value(r) -> str:
    v = r["value"]
    if v is None:
        return "-"
    if r["unit"] == "x":
        return f"{v:.3f}x"
    if r["unit"] == "exp":
        return f"{v:.2f}"
    return f"{v:.2f} {r['unit']}"


def met_text(r) -> str:
    return {True: "yes", False: "NO", None: "-"}[r["met"]]


def format_line(r) -> str:
    return f"{r['row']:<28} {fmt_value(r):>12}  {r['target']:<26} {met_text(r):<4} {r['detail']}"


def markdown(rows, runs: list[dict[str, Any]]) -> str:
    """The table; with rows from more than one run, a ``run`` column names each row's."""
    def said(h):
        return (f"{h['date']}, seqbench {h['version']}, torch {h['torch']}, command "
                f"`{h['command']}`, load average at start {h['load']}")

    lines = [f"# seqbench perf: {runs[-1]['machine']}", ""]
    several = len(runs) > 1
    if several:
        lines += ["Rows from several runs (each ratio is measured side by side within its run):",
                  ""]
        lines += [f"{i + 1}. {said(h)}." for i, h in enumerate(runs)]
    else:
        lines.append(said(runs[0]) + ".")
    head = ["row", "value", "target", "met", *(["run"] if several else []), "detail"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["row"], fmt_value(r), r["target"], met_text(r),
                 *([str(r.get("run", 0) + 1)] if several else []),
                 r["detail"].replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def earlier(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows and run headers of the perf JSON at ``path`` (none if it does not exist);
    read before anything is measured, so an unreadable file costs no measurement."""
    if not path.exists():
        return [], []
    try:
        old = json.loads(path.read_text())
        runs = old["runs"] if "runs" in old else [old["header"]]
        rows = [{"run": 0, **r} for r in old["rows"]]
        if not all(isinstance(r["row"], str) and 0 <= r["run"] < len(runs) for r in rows):
            raise ValueError("a row without a name or with a run out of range")
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: expected a perf JSON (runs and rows) to update, could not "
                         f"read it ({exc}); move it away or pass --replace") from None
    return rows, runs


def merged(old_rows: list[dict[str, Any]], old_runs: list[dict[str, Any]],
           results: list[dict[str, Any]], header: dict[str, Any]):
    """This run's rows over those of an earlier file (:func:`earlier`).

    A row this run measured replaces the row of the same name in place; rows it did not
    measure are kept with the run that measured them, so ``--rows overhead`` updates one
    row of the table instead of truncating it. Returns ``(rows, runs)``: each row's
    ``run`` indexes ``runs`` (the headers of the runs still represented, oldest first).
    """
    new = {r["row"]: {**r, "run": len(old_runs)} for r in results}
    rows = [new.pop(r["row"]) if r["row"] in new else r for r in old_rows]
    rows += list(new.values())
    used = sorted({r["run"] for r in rows})
    renumber = {old: i for i, old in enumerate(used)}
    runs = [(old_runs + [header])[i] for i in used]
    return [{**r, "run": renumber[r["run"]]} for r in rows], runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=None, help="comma-separated rows (default: every CPU row)")
    p.add_argument("--gpu", action="store_true", help="the GPU rows (instead of the CPU rows)")
    p.add_argument("--device", default=None, help="device of the GPU rows: cuda (default) or cpu "
                   "(a dry run at tiny sizes)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per side (median)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that rows run")
    p.add_argument("--memory-suites", default="smoke", help="suites of the memory rows: "
                   "smoke, or smoke,longrange")
    p.add_argument("--out", default=str(ROOT / "results"), help="folder for perf-*.md/json "
                   "('-' writes nothing); rows already there that this run does not measure "
                   "are kept, marked with the run that measured them")
    p.add_argument("--replace", action="store_true", help="write only this run's rows, "
                   "dropping those of earlier runs from the files")
    args = p.parse_args(argv)

    import torch

    import seqbench
    from seqbench import heap

    torch.set_num_threads(1)
    heap.keep_freed_blocks()  # every row allocates as the runner's job processes do
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ensure_builtins()
    if args.device is None:
        args.device = "cuda" if args.gpu else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: the GPU rows need one (use --device cpu for a dry run)",
              file=sys.stderr)
        return 2
    rows = args.rows.split(",") if args.rows else list(GPU_ROWS if args.gpu else CPU_ROWS)
    header = {"machine": machine("cuda" if args.device == "cuda" else "cpu"),
              "date": time.strftime("%Y-%m-%d %H:%M %Z"), "version": seqbench.__version__,
              "torch": torch.__version__, "command": " ".join(["benchmarks/perf.py",
                                                              *(argv or sys.argv[1:])]),
              "load": f"{os.getloadavg()[0]:.2f}", "host": platform.node()}
    stem = None
    if args.out != "-":
        tag = slug(header["machine"].split(" (")[0]) + ("-quick" if args.quick else "")
        kind = "gpu" if any(r.startswith("gpu") for r in rows) else "cpu"
        if kind == "gpu" and args.device != "cuda":
            tag += "-dryrun"
        stem = Path(args.out) / f"perf-{kind}-{tag}"
        before = ([], []) if args.replace else earlier(stem.with_suffix(".json"))
    print(f"seqbench perf on {header['machine']} (load {header['load']})", flush=True)
    results = run_rows(rows, args)
    if args.quick:  # tiny sizes: fixed costs dominate, so the ratios are not judged
        for r in results:
            r["met"] = None
            r["target"] = (r["target"] + " (quick)").strip()
    print()
    print(f"{'row':<28} {'value':>12}  {'target':<26} {'met':<4} detail")
    for r in results:
        print(format_line(r))
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        rows_out, runs = merged(*before, results, header)
        for path, text in ((stem.with_suffix(".md"), markdown(rows_out, runs)),
                           (stem.with_suffix(".json"),
                            json.dumps({"runs": runs, "rows": rows_out}, indent=1))):
            tmp = path.with_name(path.name + ".tmp")  # never a half-written table
            tmp.write_text(text)
            tmp.replace(path)
        kept = len(rows_out) - len(results)
        print(f"\nwrote {stem}.md and .json" + (f" ({kept} row(s) of earlier runs kept; "
                                                 "--replace drops them)" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
