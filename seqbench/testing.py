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
kind and problem shape the tags declare, on the training inputs and on new ones, with
outputs that evaluation accepts (:func:`seqbench.metrics.check_predictions`: class ids
integer-valued in [0, K), probabilities in [0, 1] summing to 1, real outputs finite),
held at every step; refusal of an undeclared input or target kind with
:class:`~seqbench.errors.IncompatibleError`; predict-time inputs of the wrong size or
with NaN refused with :class:`~seqbench.errors.SeqbenchError`; the same
``random_state`` giving the same predictions (for models tagged deterministic); inputs
left unmodified; a fitted model that pickles and predicts the same after loading; targets
at unscored positions (out-of-range class ids, NaN) ignored; token ids of a small integer
dtype (uint8) taken as the same ids in int64. On inputs the model was not fitted on:
**causality** (outputs at steps <= t unchanged when the inputs after t are replaced or cut
off: per-step predictions, forecasts from ``X[..t]``; :func:`check_causal`) and **row
independence** (a row's outputs do not depend on the other rows of the batch, their
number or order; :func:`check_rows_independent`), both within ``RTOL``/``ATOL`` (float32
rounding). A model with randomness in its fit (tagged ``seeded`` or ``uses_torch``, or not
``deterministic``) must take ``random_state`` and give other outputs for another value
(:func:`check_random_state_used`); a deterministic model tagged neither is not held to
this, since one that draws nothing at random (``ar``) cannot be told from the outside from
one that ignores its seed. A failure is an
``AssertionError`` of one line: ``Model: check_name: what was expected and what came``.

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
from .errors import DivergedError, IncompatibleError, SeqbenchError
from .metrics import check_predictions

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
    """Small random data of the given kinds and shape (targets depend on the inputs).

    ``forecasting``: every step scored, ``Y[t] = X[t+1]``; random walks (N, T, 1) for
    real inputs, or for tokens a walk of steps -1, 0, +1 on the vocabulary (mod
    ``VOCAB``) with the next token as the class."""
    rng = np.random.default_rng(seed)
    t = 1 if shape == "one-to-one" else T
    mask = shape_mask(shape, N, t)
    if forecasting and input_kind == "tokens":
        z = np.cumsum(rng.integers(-1, 2, size=(N, t + 1)), axis=1) % VOCAB  # (N, T+1)
        return SeqData(z[:, :-1].copy(), z[:, 1:].copy(), np.ones((N, t), bool),
                       input_size=VOCAB, target_size=VOCAB, forecasting=True)
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


def _fail(model, msg: str, check: str) -> AssertionError:
    """The failure of ``check`` on ``model``: one line, ``Model: check: msg``."""
    return AssertionError(f"{type(model).__name__}: {check}: {msg}")


# -- the checks ----------------------------------------------------------------------------
def check_clone_params(model) -> None:
    """get_params/set_params round-trip; clone gives an equal, unfitted model."""
    params = model.get_params()
    twin = clone(model)
    if twin.get_params() != params:
        raise _fail(model, "clone() changed the parameters", "check_clone_params")
    twin.set_params(**params)
    if twin.get_params() != params:
        raise _fail(model, "set_params(**get_params()) changed the parameters",
                    "check_clone_params")
    fitted = [k for k in vars(twin) if k.endswith("_") and not k.startswith("_")]
    if fitted:
        raise _fail(model, f"the constructor set fitted-looking attributes {fitted}",
                    "check_clone_params")


def _evaluation_refusal(data: SeqData, pred: np.ndarray, proba: np.ndarray | None,
                        everywhere: bool = False) -> str | None:
    """Why evaluation (:func:`seqbench.metrics.check_predictions`, which ``evaluate``
    runs) would refuse these outputs for ``data``, or None. ``everywhere``: at every step,
    not only the scored ones (``data``'s targets are valid at every step)."""
    if everywhere:
        data = SeqData(data.X, data.Y, np.ones(data.mask.shape, bool),
                       input_size=data.input_size, target_size=data.target_size,
                       forecasting=data.forecasting)
    try:
        check_predictions(data, pred, proba)
    except (SeqbenchError, DivergedError) as exc:
        return str(exc)
    return None


def check_fit_predict_shapes(model) -> None:
    """fit returns self; predictions align with Y for every declared kind and shape, on the
    training inputs and on new ones; class ids are integers (an integer dtype, or floats
    equal to integers) in [0, K) and probabilities lie in [0, 1] and sum to 1 at every
    step, as evaluation requires at the scored steps
    (:func:`seqbench.metrics.check_predictions`)."""
    check = "check_fit_predict_shapes"
    for ik, tk, shape, fc in _supported(model):
        data = make_data(ik, tk, shape, forecasting=fc)
        new = make_data(ik, tk, shape, seed=1, forecasting=fc)
        m = quick(model)
        if m.fit(data, data, shape=shape) is not m:
            raise _fail(model, "fit must return self", check)
        for d, which in ((data, "training"), (new, "new")):
            pred = m.predict(d.X)
            where = f"predict on {which} {ik}->{tk} {shape} inputs"
            if pred.shape != d.Y.shape:
                raise _fail(model, f"{where}: shape {pred.shape}, expected {d.Y.shape}", check)
            proba = None
            if tk == "classes" and m.tags()["predict_proba"]:
                proba = m.predict_proba(d.X)
                if proba.shape != (*d.Y.shape, d.target_size):
                    raise _fail(model, f"predict_proba on {which} {ik}->{tk} {shape} inputs: "
                                f"shape {proba.shape}, expected {(*d.Y.shape, d.target_size)}",
                                check)
            why = _evaluation_refusal(d, pred, proba)
            if why:
                raise _fail(model, f"{where}: evaluation would refuse the outputs: {why}", check)
            why = tk == "classes" and _evaluation_refusal(d, pred, proba, everywhere=True)
            if why:
                raise _fail(model, f"{where}: the outputs at unscored steps break the rule "
                            f"evaluation applies at scored ones: {why}", check)
            if proba is not None and not np.allclose(proba.sum(-1), 1.0, atol=1e-5):
                raise _fail(model, f"predict_proba on {which} {ik}->{tk} {shape} inputs: rows "
                            "do not sum to 1 (within 1e-5)", check)


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
            raise _fail(model, f"accepted {ik}->{tk} data its tags do not declare",
                        "check_refuses_undeclared")


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
        raise _fail(model, f"predict accepted bad input of shape {X.shape} dtype {X.dtype}",
                    "check_predict_validates")


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
            raise _fail(model, f"two fits with random_state=7 predict differently ({ik}->{tk})",
                        "check_deterministic")


def check_inputs_unmodified(model) -> None:
    """fit and predict leave the caller's arrays untouched."""
    ik, tk, shape, fc = _supported(model)[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    before = [a.copy() for a in (data.X, data.Y, data.mask)]
    m = quick(model).fit(data, data, shape=shape)
    m.predict(data.X)
    for a, b in zip(before, (data.X, data.Y, data.mask)):
        if not np.array_equal(a, b):
            raise _fail(model, "fit or predict modified its input arrays",
                        "check_inputs_unmodified")


def check_pickle(model) -> None:
    """A fitted model pickles and predicts the same after loading."""
    ik, tk, shape, fc = _supported(model)[0]
    data = make_data(ik, tk, shape, forecasting=fc)
    m = quick(model).fit(data, data, shape=shape)
    loaded = pickle.loads(pickle.dumps(m))
    if not np.allclose(m.predict(data.X), loaded.predict(data.X), equal_nan=True):
        raise _fail(model, "predictions changed after a pickle round-trip", "check_pickle")


def _same_predictions(a: np.ndarray, b: np.ndarray) -> bool:
    return (np.array_equal(a, b) if a.dtype.kind in "iub"
            else np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))


def _predicts_as_plain(model, variant: SeqData, data: SeqData, shape: str,
                       problem: str, check: str) -> None:
    """Fit on ``variant`` (``data`` written another way) and predict its X; for models
    tagged deterministic, the predictions must be those of a fit on ``data`` (else
    ``problem`` is the failure of ``check``), and the others must fit."""
    got = _seeded(model).fit(variant, variant, shape=shape).predict(variant.X)
    if model.tags()["deterministic"]:
        want = _seeded(model).fit(data, data, shape=shape).predict(data.X)
        if not _same_predictions(got, want):
            raise _fail(model, problem, check)


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
                           f"the predictions ({ik}->{tk} {shape})",
                           "check_unscored_targets_ignored")


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
                       f"int64 ones ({ik}->{tk} {shape})", "check_token_dtypes")


# -- behaviour on new data: causality, row independence, random_state --------------------
#: tolerance for outputs that must not change (float32 torch models round differently
#: for batches of other sizes)
RTOL = ATOL = 1e-5
#: class ids are compared where the two most probable classes differ by more than this
TIE = 1e-4


def _behaviour_configs(model) -> list[tuple[str, str, str, bool]]:
    """The configurations the checks on new data fit: every input and target kind, each
    with the many-to-one and synced many-to-many shapes where declared (a model may work
    differently for one scored step and for many: the HMM's modes), else its first
    declared shape of more than one step; and forecasting data (``Y[t] = X[t+1]``, where
    reading ``X[t+1]`` would be a perfect score) of real -> real and tokens -> classes,
    where declared (forecasting changes how the Kalman and HMM models read ``X``)."""
    configs = [c for c in _supported(model) if c[2] != "one-to-one"]
    picked = [c for c in configs if c[2] in ("many-to-one", "many-to-many-synced")]
    for ik, tk in dict.fromkeys((c[0], c[1]) for c in configs):
        if not any(c[:2] == (ik, tk) for c in picked):
            picked.append(next(c for c in configs if c[:2] == (ik, tk)))
    for kinds in (("real", "real"), ("tokens", "classes")):
        if (*kinds, "many-to-many-synced", False) in configs:
            picked.append((*kinds, "many-to-many-synced", True))
    return picked


#: the fits of :func:`_fit_for_new_data` for the model checked last, by configuration
_NEW_DATA_FITS: dict[tuple, tuple] = {}


def _fit_for_new_data(model, ik: str, tk: str, shape: str, fc: bool):
    """:func:`_seeded` model fitted on the usual conformance data, and two other draws of
    the same kinds (seeds 1 and 2) whose inputs it has never seen. The fits of the model
    checked last are kept (the causality and row checks share them and only predict);
    a model whose parameters do not pickle is fitted each time."""
    try:
        key = (type(model), pickle.dumps(model.get_params()), ik, tk, shape, fc)
    except Exception:  # noqa: BLE001 - no key, no reuse
        key = None
    if key in _NEW_DATA_FITS:
        return _NEW_DATA_FITS[key]
    data = make_data(ik, tk, shape, forecasting=fc)
    m = _seeded(model).fit(data, data, shape=shape)
    out = (m, make_data(ik, tk, shape, seed=1, forecasting=fc).X,
           make_data(ik, tk, shape, seed=2, forecasting=fc).X)
    if key is not None:
        if any(k[:2] != key[:2] for k in _NEW_DATA_FITS):
            _NEW_DATA_FITS.clear()  # another model
        _NEW_DATA_FITS[key] = out
    return out


def _outputs(m, X: np.ndarray) -> dict[str, np.ndarray]:
    """``predict`` and, for class targets where offered, ``predict_proba`` of ``X``."""
    out = {"predict": np.asarray(m.predict(X))}
    if m.target_kind_ == "classes" and m.tags()["predict_proba"]:
        out["predict_proba"] = np.asarray(m.predict_proba(X))
    return out


def _difference(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> str | None:
    """How ``got`` differs from ``want`` (outputs of :func:`_outputs` for the same steps),
    or None: probabilities and real outputs beyond ``RTOL``/``ATOL``; class ids anywhere
    when there are no probabilities, else where ``want``'s two most probable classes are
    more than ``TIE`` apart."""
    for name in want:
        a, b = got[name], want[name]
        if a.shape != b.shape:
            return f"{name} has shape {a.shape}, expected {b.shape}"
        if name == "predict" and a.ndim == 2:  # class ids
            differ = a != b
            if "predict_proba" in want:
                top2 = np.sort(want["predict_proba"], axis=-1)[..., -2:]  # (N, T, 2)
                differ &= top2[..., 1] - top2[..., 0] > TIE
            if differ.any():
                return (f"predict gives other class ids at {int(differ.sum())} of {a.size} "
                        "positions")
        elif not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
            a, b = a.astype(float), b.astype(float)
            if (np.isnan(a) != np.isnan(b)).any():
                return f"{name} has NaN at other steps"
            return (f"{name} differs by up to {np.nanmax(np.abs(a - b)):.3g} (tolerance "
                    f"{ATOL:g} + {RTOL:g} * |value|)")
    return None


def _predicting(model, check: str, what: str, m, X: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`_outputs`, with an error while predicting reported as the check's failure."""
    try:
        return _outputs(m, X)
    except Exception as exc:  # noqa: BLE001 - any error is this check's failure
        msg = " ".join(str(exc).split())
        raise _fail(model, f"{what}: predict raised {type(exc).__name__}: {msg}",
                    check) from exc


def check_causal(model) -> None:
    """Outputs at step t depend on the inputs up to t only (the data contract: per-step
    predictions, forecasts ``Y[t] = X[t+1]`` made from ``X[..t]``): on inputs the model
    has not seen, predictions (and class probabilities) at steps ``<= t`` do not change
    (beyond float32 rounding) when the inputs after t are replaced by other valid inputs,
    or cut off (a row of t + 1 steps), for a few t. This catches reading a later input,
    a statistic of the whole row, or the row's length."""
    check = "check_causal"
    for ik, tk, shape, fc in _behaviour_configs(model):
        m, X, other = _fit_for_new_data(model, ik, tk, shape, fc)
        where = f"{ik}->{tk} {'forecasting' if fc else shape}"
        base = _predicting(model, check, where, m, X)
        T_ = X.shape[1]
        for t in sorted({0, T_ // 2 - 1, T_ - 2}):
            changed = X.copy()
            changed[:, t + 1:] = other[:, t + 1:]
            for how, Xt in (("replaced", changed), ("cut off", X[:, :t + 1])):
                what = f"{where}, inputs after step {t} {how}"
                got = _predicting(model, check, what, m, Xt)
                why = _difference({k: v[:, :t + 1] for k, v in got.items()},
                                  {k: v[:, :t + 1] for k, v in base.items()})
                if why:
                    raise _fail(model, f"outputs at steps <= {t} changed when the inputs after "
                                f"step {t} were {how} ({where}): {why}; expected no change",
                                check)


def check_rows_independent(model) -> None:
    """Each row is predicted on its own: on inputs the model has not seen, predicting some
    of the rows (fewer rows, in another order), one row alone, or the rows among more
    rows gives those rows the outputs they get when predicted all together (beyond
    float32 rounding). This catches statistics of the prediction batch (standardising
    with its mean) and sizes remembered from fit."""
    check = "check_rows_independent"
    for ik, tk, shape, fc in _behaviour_configs(model):
        m, X, other = _fit_for_new_data(model, ik, tk, shape, fc)
        where = f"{ik}->{tk} {'forecasting' if fc else shape}"
        n = len(X)
        base = _predicting(model, check, where, m, X)
        picks = np.arange(n)[::-3]  # fewer rows, in reverse order
        for how, rows, Xb, at in (
            (f"{len(picks)} of the {n} rows in reverse order", picks, X[picks], slice(None)),
            ("one row alone", [n // 2], X[[n // 2]], slice(None)),
            (f"the {n} rows followed by {len(other)} others", slice(None),
             np.concatenate([X, other]), slice(0, n)),
        ):
            got = _predicting(model, check, f"{where}, {how}", m, Xb)
            why = _difference({k: v[at] for k, v in got.items()},
                              {k: v[rows] for k, v in base.items()})
            if why:
                raise _fail(model, f"predicting {how} changed their outputs ({where}): {why}; "
                            f"expected the outputs of the {n} rows predicted together", check)


def check_random_state_used(model) -> None:
    """``random_state`` is honoured: for a model with randomness in its fit (tagged
    ``seeded``, or ``uses_torch``, whose weights start random, or not ``deterministic``), fits
    with two different ``random_state`` values give different outputs (real predictions
    or class probabilities, not only class ids) on the conformance data. A model that
    always draws from one fixed seed fails. Such a model must take ``random_state``."""
    check = "check_random_state_used"
    tags = model.tags()
    if tags["deterministic"] and not (tags["seeded"] or tags["uses_torch"]):
        return
    if "random_state" not in model.get_params():
        raise _fail(model, "a model with randomness in its fit (tagged seeded or uses_torch, "
                    "or not deterministic) must take a random_state parameter; it has none",
                    check)
    # real outputs first: they show a difference that class ids may round away
    configs = sorted(_behaviour_configs(model), key=lambda c: c[1] != "real")[:2]
    for ik, tk, shape, fc in configs:
        data = make_data(ik, tk, shape, forecasting=fc)
        outs = [_outputs(quick(model).set_params(random_state=seed).fit(data, data, shape=shape),
                         data.X) for seed in (7, 8)]
        if any(not np.array_equal(outs[0][k], outs[1][k]) for k in outs[0]):
            return
    tried = "; ".join(f"{ik}->{tk} {shape}" for ik, tk, shape, _ in configs)
    raise _fail(model, f"fits with random_state=7 and random_state=8 gave identical outputs "
                f"({tried}); expected different ones (is random_state ignored?)", check)


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
    check_causal,
    check_rows_independent,
    check_random_state_used,
)


def check_model(model) -> None:
    """Run every conformance check on ``model``; raise AssertionError on the first failure,
    one line ``Model: check_name: ...`` (whatever the model itself raised included, its
    type named; the original is chained)."""
    for check in CHECKS:
        head = f"{type(model).__name__}: {check.__name__}: "
        try:
            check(model)
        except AssertionError as exc:
            if str(exc).startswith(head):
                raise
            raise AssertionError(head + str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - the model's own error fails the check
            raise AssertionError(f"{head}raised {type(exc).__name__}: {exc}") from exc


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
