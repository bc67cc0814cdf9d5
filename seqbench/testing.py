"""Conformance checks every seqbench model must pass (built-ins and plugins alike).

In a plugin's tests::

    from seqbench.testing import check_model, parametrize_with_checks

    def test_my_model():
        check_model(MyModel())                 # runs every check, raises on the first failure

    @parametrize_with_checks([MyModel(), MyModel(hidden=8)])
    def test_conformance(model, check):        # one pytest case per model and check
        check(model)

The checks: ``clone``/``get_params``/``set_params`` round-trip and the constructor only
stores its arguments; fit/predict(/predict_proba) shapes for every input kind, target
kind and problem shape the tags declare; refusal of an undeclared input or target kind
with :class:`~seqbench.errors.IncompatibleError`; predict-time inputs of the wrong size
or with NaN refused with :class:`~seqbench.errors.SeqbenchError`; the same
``random_state`` giving the same predictions (for models tagged deterministic); inputs
left unmodified; a fitted model that pickles and predicts the same after loading; targets
at unscored positions (out-of-range class ids, NaN) ignored; token ids of a small integer
dtype (uint8) taken as the same ids in int64.

Checks run with small budgets: parameters named ``max_steps``, ``eval_every``,
``max_iter``, ``n_iter`` and ``n_init`` are lowered when the model has them.

Memory: :func:`dataset_copies` measures, in a fresh interpreter, how much a model's fit
and predict grow the peak RSS over the bytes of a large synthetic split (the check that
no job holds a second copy of its dataset; ``tests/test_memory.py``, and the ``copies``
rows of ``benchmarks/perf.py``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable

import numpy as np
from sklearn.base import clone

from .data import SHAPES, SeqData
from .errors import IncompatibleError, SeqbenchError

QUICK = {"max_steps": 10, "eval_every": 5, "max_iter": 5, "n_iter": 5, "n_init": 1}
N, T, VOCAB, D, K_CLASSES, K_REAL = 24, 8, 5, 2, 3, 2


def quick(model):
    """A clone of ``model`` with small training budgets (see the module docstring)."""
    params = model.get_params()
    return clone(model).set_params(**{k: v for k, v in QUICK.items() if k in params})


def shape_mask(shape: str, n: int = N, t: int = T) -> np.ndarray:
    """A mask of the scored positions for one problem shape."""
    mask = np.zeros((n, t), dtype=bool)
    if shape == "many-to-one":
        mask[:, -1] = True
    elif shape == "many-to-many-synced":
        mask[:] = True
    elif shape == "many-to-many-delayed":
        mask[:, t // 2:] = True
    elif shape == "one-to-many":
        mask[:, 1:] = True
    elif shape == "one-to-one":
        mask = np.ones((n, 1), dtype=bool)
    return mask


def make_data(input_kind: str, target_kind: str, shape: str = "many-to-many-synced",
              seed: int = 0, forecasting: bool = False) -> SeqData:
    """Small random data of the given kinds and shape (targets depend on the inputs)."""
    rng = np.random.default_rng(seed)
    t = 1 if shape == "one-to-one" else T
    mask = shape_mask(shape, N, t)
    if forecasting:
        z = np.cumsum(rng.normal(size=(N, t + 1, 1)), axis=1)  # (N, T+1, 1) random walks
        return SeqData(z[:, :-1].copy(), z[:, 1:].copy(), np.ones((N, t), bool),
                       forecasting=True)
    if input_kind == "tokens":
        X = rng.integers(0, VOCAB, size=(N, t))  # (N, T)
        signal = X.astype(float)
    else:
        X = rng.normal(size=(N, t, D))  # (N, T, D)
        signal = X[..., 0]
    if target_kind == "classes":
        Y = (np.floor(np.abs(signal)) % K_CLASSES).astype(np.int64)  # (N, T)
        Y.flat[np.flatnonzero(mask)[:K_CLASSES]] = np.arange(K_CLASSES)  # every class occurs
        return SeqData(X, Y, mask, target_size=K_CLASSES,
                       input_size=VOCAB if input_kind == "tokens" else None)
    Y = np.stack([signal, -signal], axis=-1) + 0.1 * rng.normal(size=(N, t, K_REAL))
    return SeqData(X, Y, mask, input_size=VOCAB if input_kind == "tokens" else None)


def _supported(model) -> list[tuple[str, str, str, bool]]:
    tags = model.tags()
    if tags["forecasting_only"]:
        return [("real", "real", "many-to-many-synced", True)]
    out = []
    for ik in tags["input_kinds"]:
        for tk in tags["target_kinds"]:
            for shape in tags["shapes"]:
                out.append((ik, tk, shape, False))
    return out


def _fail(model, msg: str) -> AssertionError:
    return AssertionError(f"{type(model).__name__}: {msg}")


# -- the checks ----------------------------------------------------------------------------
def check_clone_params(model) -> None:
    """get_params/set_params round-trip; clone gives an equal, unfitted model."""
    params = model.get_params()
    twin = clone(model)
    if twin.get_params() != params:
        raise _fail(model, "clone() changed the parameters")
    twin.set_params(**params)
    if twin.get_params() != params:
        raise _fail(model, "set_params(**get_params()) changed the parameters")
    fitted = [k for k in vars(twin) if k.endswith("_") and not k.startswith("_")]
    if fitted:
        raise _fail(model, f"the constructor set fitted-looking attributes {fitted}")


def check_fit_predict_shapes(model) -> None:
    """fit returns self; predictions align with Y for every declared kind and shape."""
    for ik, tk, shape, fc in _supported(model):
        data = make_data(ik, tk, shape, forecasting=fc)
        m = quick(model)
        if m.fit(data, data, shape=shape) is not m:
            raise _fail(model, "fit must return self")
        pred = m.predict(data.X)
        expected = data.Y.shape
        if pred.shape != expected:
            raise _fail(model, f"predict on {ik}->{tk} {shape}: shape {pred.shape}, "
                        f"expected {expected}")
        if tk == "real" and not np.isfinite(pred[data.mask]).all():
            raise _fail(model, f"predict on {ik}->{tk} {shape}: non-finite predictions")
        if tk == "classes":
            if not ((pred >= 0) & (pred < data.target_size)).all():
                raise _fail(model, f"predict on {ik}->{tk} {shape}: class ids out of range")
            if m.tags()["predict_proba"]:
                proba = m.predict_proba(data.X)
                if proba.shape != (*data.Y.shape, data.target_size):
                    raise _fail(model, f"predict_proba shape {proba.shape}")
                if not np.allclose(proba[data.mask].sum(-1), 1.0, atol=1e-5):
                    raise _fail(model, "predict_proba rows do not sum to 1")


def check_refuses_undeclared(model) -> None:
    """Data of a kind the tags do not declare is refused with IncompatibleError."""
    tags = model.tags()
    for ik in ("tokens", "real"):
        for tk in ("classes", "real"):
            if ik in tags["input_kinds"] and tk in tags["target_kinds"]:
                continue
            data = make_data(ik, tk)
            try:
                quick(model).fit(data)
            except IncompatibleError:
                continue
            raise _fail(model, f"accepted {ik}->{tk} data its tags do not declare")


def check_predict_validates(model) -> None:
    """predict refuses inputs of the wrong size, without a sequence, or with NaN, with a
    SeqbenchError."""
    ik, tk, shape, fc = _supported(model)[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    m = quick(model).fit(data, data, shape=shape)
    bad = []
    if ik == "tokens":
        bad.append(data.X + data.input_size)  # ids beyond the vocabulary
        bad.append(data.X.astype(float)[..., None])  # wrong kind
    else:
        bad.append(np.concatenate([data.X, data.X], axis=-1))  # wrong D
        nan = data.X.copy()
        nan[0, 0, 0] = np.nan
        bad.append(nan)
    bad.append(data.X[:0])  # no sequence
    for X in bad:
        try:
            m.predict(X)
        except SeqbenchError:
            continue
        raise _fail(model, f"predict accepted bad input of shape {X.shape} dtype {X.dtype}")


def _seeded(model):
    """:func:`quick` with ``random_state=7`` where the model takes one."""
    m = quick(model)
    return m.set_params(random_state=7) if "random_state" in m.get_params() else m


def check_deterministic(model) -> None:
    """The same random_state gives the same predictions (models tagged deterministic)."""
    if not model.tags()["deterministic"]:
        return
    for ik, tk, shape, fc in _supported(model)[:2]:
        data = make_data(ik, tk, shape, forecasting=fc)
        preds = [_seeded(model).fit(data, data, shape=shape).predict(data.X) for _ in range(2)]
        if not np.array_equal(preds[0], preds[1]):
            raise _fail(model, f"two fits with random_state=7 predict differently ({ik}->{tk})")


def check_inputs_unmodified(model) -> None:
    """fit and predict leave the caller's arrays untouched."""
    ik, tk, shape, fc = _supported(model)[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    before = [a.copy() for a in (data.X, data.Y, data.mask)]
    m = quick(model).fit(data, data, shape=shape)
    m.predict(data.X)
    for a, b in zip(before, (data.X, data.Y, data.mask)):
        if not np.array_equal(a, b):
            raise _fail(model, "fit or predict modified its input arrays")


def check_pickle(model) -> None:
    """A fitted model pickles and predicts the same after loading."""
    ik, tk, shape, fc = _supported(model)[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    m = quick(model).fit(data, data, shape=shape)
    loaded = pickle.loads(pickle.dumps(m))
    if not np.allclose(m.predict(data.X), loaded.predict(data.X), equal_nan=True):
        raise _fail(model, "predictions changed after a pickle round-trip")


def _same_predictions(a: np.ndarray, b: np.ndarray) -> bool:
    return (np.array_equal(a, b) if a.dtype.kind in "iub"
            else np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))


def _predicts_as_plain(model, variant: SeqData, data: SeqData, shape: str,
                       problem: str) -> None:
    """Fit on ``variant`` (``data`` written another way) and predict its X; for models
    tagged deterministic, the predictions must be those of a fit on ``data`` (else
    ``problem`` is the failure), and the others must fit."""
    got = _seeded(model).fit(variant, variant, shape=shape).predict(variant.X)
    if model.tags()["deterministic"]:
        want = _seeded(model).fit(data, data, shape=shape).predict(data.X)
        if not _same_predictions(got, want):
            raise _fail(model, problem)


def check_unscored_targets_ignored(model) -> None:
    """Targets at unscored positions may hold anything (``SeqData`` checks Y only where
    the mask is set): class ids out of range, or NaN for real targets, there change
    nothing in fit or predictions (models tagged deterministic; the others must fit)."""
    for ik, tk, shape, fc in _supported(model):
        data = make_data(ik, tk, shape, forecasting=fc)
        if data.mask.all():
            continue
        Y = data.Y.copy()
        Y[~data.mask] = data.target_size + 5 if tk == "classes" else np.nan
        noisy = SeqData(data.X, Y, data.mask, input_size=data.input_size,
                        target_size=data.target_size)
        _predicts_as_plain(model, noisy, data, shape, "values of unscored targets changed "
                           f"the predictions ({ik}->{tk} {shape})")


def check_token_dtypes(model) -> None:
    """Token ids of any integer dtype ``SeqData`` accepts (uint8 here) fit and predict as
    the same ids in int64 do (models tagged deterministic: the same predictions)."""
    kinds = [k for k in _supported(model) if k[0] == "tokens"]
    if not kinds:
        return
    ik, tk, shape, fc = kinds[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    small = SeqData(data.X.astype(np.uint8), data.Y, data.mask, input_size=data.input_size,
                    target_size=data.target_size, forecasting=data.forecasting)
    _predicts_as_plain(model, small, data, shape, "uint8 token ids predict differently from "
                       f"int64 ones ({ik}->{tk} {shape})")


CHECKS: tuple[Callable, ...] = (
    check_clone_params,
    check_fit_predict_shapes,
    check_refuses_undeclared,
    check_predict_validates,
    check_deterministic,
    check_inputs_unmodified,
    check_pickle,
    check_unscored_targets_ignored,
    check_token_dtypes,
)


def check_model(model) -> None:
    """Run every conformance check on ``model``; raise AssertionError on the first failure."""
    for check in CHECKS:
        check(model)


def parametrize_with_checks(models: Iterable) -> Callable:
    """A ``pytest.mark.parametrize`` over (model, check) pairs, one case per pair."""
    import pytest

    models = list(models)
    cases = [(m, c) for m in models for c in CHECKS]
    ids = [f"{type(m).__name__}-{c.__name__}" for m, c in cases]
    return pytest.mark.parametrize("model, check", cases, ids=ids)


# -- memory: copies of the dataset ----------------------------------------------------------
#: one small configuration per family for :func:`dataset_copies` (tiny training budgets: the
#: peak comes with the first step or iteration). The LDS's ``chunk_size`` keeps its chunk
#: working memory (the engine's default budget is ``CHUNK_BYTES``, 256 MiB) small beside
#: the split.
COPIES_MODELS: dict[str, dict] = {
    "ar": {"p": 4, "max_iter": 3},  # max_iter: the logistic AR's L-BFGS (class targets)
    "mlp": {"p": 4, "hidden_sizes": [4], "max_iter": 1},
    "lds": {"n_states": 2, "max_iter": 1, "chunk_size": 250},
    "hmm": {"n_states": 2, "n_iter": 2, "n_init": 1},
    "lstm": {"hidden_size": 4, "max_steps": 2, "eval_every": 2, "batch_size": 32,
             "device": "cpu"},
    "gru": {"hidden_size": 4, "max_steps": 2, "eval_every": 2, "batch_size": 32,
            "device": "cpu"},
    "rnn": {"hidden_size": 4, "max_steps": 2, "eval_every": 2, "batch_size": 32,
            "device": "cpu"},
}


def copies_data(n: int, T: int, D: int, shape: str = "many-to-one", seed: int = 0,
                targets: str = "real", inputs: str = "real") -> SeqData:
    """A synthetic split for :func:`dataset_copies`, in two regimes that alternate every 20
    steps (so an HMM's k-means initialisation converges in a few iterations), with the
    mask of ``shape``. Inputs: ``"real"``, X (n, T, D) float64, standard normal plus 2 in
    the second regime (X is most of the split's bytes when D is large); ``"tokens"``, X
    (n, T) int64 uniform on a vocabulary of D, shifted by D // 2 (mod D) in the second
    regime. Targets: ``"real"``, Y (n, T, 1) = x_0 / 2 plus noise; ``"classes"``, Y (n, T),
    three classes: [x_0 + noise > 1] + [x_1 > 2] for real inputs, (x + [noise > 1]) mod 3
    for tokens."""
    rng = np.random.default_rng(seed)
    regime2 = (np.arange(n)[:, None] + np.arange(T)[None, :] // 20) % 2 == 1  # (N, T)
    if inputs == "tokens":
        X = rng.integers(0, D, size=(n, T))  # (N, T)
        X[regime2] = (X[regime2] + D // 2) % D
        noise = rng.standard_normal((n, T))
        if targets == "classes":
            Y = (X + (noise > 1)) % 3  # (N, T) ids 0-2
            return SeqData(X, Y, shape_mask(shape, n, T), input_size=D, target_size=3)
        Y = (0.5 * X + 0.1 * noise)[..., None]  # (N, T, 1)
        return SeqData(X, Y, shape_mask(shape, n, T), input_size=D)
    X = rng.standard_normal((n, T, D))  # (N, T, D)
    X[regime2] += 2.0  # regime 2
    noise = rng.standard_normal((n, T))  # (N, T)
    if targets == "classes":
        Y = (X[..., 0] + noise > 1).astype(np.int64) + (X[..., 1] > 2)  # (N, T) ids 0-2
        return SeqData(X, Y, shape_mask(shape, n, T), target_size=3)
    Y = 0.5 * X[..., :1] + 0.1 * noise[..., None]  # (N, T, 1)
    return SeqData(X, Y, shape_mask(shape, n, T))


def _release_free_memory() -> None:
    """Collect garbage and hand the allocator's free memory back to the kernel (glibc's
    ``malloc_trim``, where there is one), so that RSS counts live memory only and memory
    freed earlier, still resident, cannot be reused unseen by a later measurement."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rss_bytes() -> int:
    from .runner import proc_status_kb

    kb = proc_status_kb("VmRSS")
    if kb is None:
        raise OSError("no VmRSS in /proc/self/status")
    return kb * 1024


def peak_reset_unavailable() -> str | None:
    """Why :func:`dataset_copies` cannot measure here (None when it can): it needs Linux's
    ``/proc/self/clear_refs`` (to reset the peak RSS) and ``VmHWM``/``VmRSS``."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _rss_bytes()
    except OSError as exc:
        return f"cannot reset the kernel's peak RSS ({type(exc).__name__}: {exc})"
    return None


def dataset_copies(model: str, params: dict | None = None, *, n: int = 5000, T: int = 100,
                   D: int = 40, shape: str = "many-to-one", seed: int = 0,
                   targets: str = "real", inputs: str = "real", predict: bool = True,
                   timeout: float = 600) -> dict:
    """How many copies of its split a model holds on the host while it fits and predicts.

    In a fresh interpreter (so nothing of an earlier measurement remains), with one
    BLAS/OpenMP/torch thread: build :func:`copies_data` (n, T, D, ``targets``, ``inputs``),
    fit and predict once on a 16-sequence split of the same T and D (libraries loaded,
    caches warmed), then fit ``make_model(model, **params)`` on the split and predict its
    X, each inside a :class:`~seqbench.runner.PeakMemory` block (the kernel's high-water
    mark, reset at the start). Growth = peak RSS in the block minus RSS just before it,
    taken after garbage collection and glibc's ``malloc_trim`` (so freed memory still
    resident cannot be reused unseen). Returns
    ``{"split_bytes", "fit_growth", "predict_growth", "output_bytes", "fit_copies",
    "predict_copies", "seconds"}`` (bytes; copies = growth / split_bytes; the prediction's
    own output, ``output_bytes``, is part of the predict growth). Raises ``RuntimeError``
    when the child fails or cannot reset the high-water mark (see
    :func:`peak_reset_unavailable`).
    """
    import json
    import os
    import subprocess
    import sys

    spec = {"model": model, "params": params or {}, "n": n, "T": T, "D": D, "shape": shape,
            "seed": seed, "targets": targets, "inputs": inputs, "predict": predict}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from seqbench.testing import _dataset_copies_child as c; c()",
         json.dumps(spec)], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"dataset_copies({model!r}) failed ({proc.returncode}): {tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out.get("method") != "vmhwm":
        raise RuntimeError(f"dataset_copies: the peak RSS could not be reset "
                           f"(method {out.get('method')!r})")
    return out


def _dataset_copies_child() -> None:
    """The child process of :func:`dataset_copies` (spec as JSON in argv[1])."""
    import json
    import sys
    import time

    from . import registry
    from .runner import PeakMemory

    spec = json.loads(sys.argv[1])
    make = lambda: registry.make_model(spec["model"], **spec["params"])  # noqa: E731
    if make().tags()["uses_torch"]:
        import torch

        torch.set_num_threads(1)
    small = copies_data(16, spec["T"], spec["D"], spec["shape"], spec["seed"] + 1,
                        spec["targets"], spec["inputs"])
    make().fit(small).predict(small.X)  # imports, one-time initialisation
    data = copies_data(spec["n"], spec["T"], spec["D"], spec["shape"], spec["seed"],
                       spec["targets"], spec["inputs"])
    del small
    model = make()
    out = {"split_bytes": data.nbytes(), "predict_growth": None, "output_bytes": None}
    t0 = time.perf_counter()
    _release_free_memory()
    before = _rss_bytes()
    with PeakMemory() as peak:
        model.fit(data)
    out["fit_growth"] = peak.peak_mb * 2**20 - before if peak.peak_mb is not None else None
    out["method"] = peak.method
    if spec["predict"]:
        _release_free_memory()
        before = _rss_bytes()
        with PeakMemory() as peak:
            pred = model.predict(data.X)
        out["predict_growth"] = peak.peak_mb * 2**20 - before
        out["output_bytes"] = int(pred.nbytes)
    out["seconds"] = time.perf_counter() - t0
    for k in ("fit", "predict"):
        g = out[f"{k}_growth"]
        out[f"{k}_copies"] = None if g is None else g / out["split_bytes"]
    print(json.dumps(out))


__all__ = ["CHECKS", "COPIES_MODELS", "SHAPES", "check_model", "copies_data", "dataset_copies",
           "make_data", "parametrize_with_checks", "peak_reset_unavailable", "quick"]
