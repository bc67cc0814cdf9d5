"""The model base class every family (and every plugin) subclasses.

Models are scikit-learn estimators: the constructor only stores its arguments,
``fit(data, valid=None)`` returns ``self``, fitted state ends in ``_``, and
``clone()`` works. The public methods validate once and call the private ones a
model author writes:

* ``_fit(data, valid)``: ``data`` (and ``valid``, when given) are validated
  :class:`~seqbench.data.SeqData` of kinds the tags declare, with the same
  input and target kinds and sizes.
* ``_predict(X)``: ``X`` has the input kind and size seen in fit. Return
  ``(N, T)`` class ids for class targets, ``(N, T, K)`` floats for real targets;
  outputs are aligned with ``Y`` (a prediction at every step; only masked
  positions are scored).
* ``_predict_proba(X)``: ``(N, T, K)`` class probabilities (class targets only).
* ``_n_parameters()`` and ``_diagnostics(data)`` (optional): what the public
  ``n_parameters`` and ``diagnostics`` report, called only on a fitted model
  (``diagnostics`` passes :class:`~seqbench.data.SeqData` whose inputs are of the kind
  and size seen in fit). The public methods refuse an unfitted model with a one-line
  :class:`~seqbench.errors.SeqbenchError`. A model that overrides ``n_parameters`` or
  ``diagnostics`` itself (as plugins written before the hooks existed do) keeps working.

Capabilities are tags (class attribute ``_tags``, merged along the MRO):

======================  ===========================================================
``input_kinds``         subset of ``("tokens", "real")``
``target_kinds``        subset of ``("classes", "real")``
``shapes``              problem shapes the model handles (default: all five)
``forecasting_only``    needs ``data.forecasting`` (Y[t] = X[t+1])
``uses_torch``          trains with torch
``device_aware``        honours ``device=`` ("auto", "cpu", "cuda", "cuda:1")
``deterministic``       the same ``random_state`` gives the same predictions
``seeded``              the fit draws from ``random_state`` with its default parameters:
                        two seeds give two different fits (models tagged ``uses_torch``
                        count as seeded)
``predict_proba``       offers ``predict_proba`` for class targets
======================  ===========================================================
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from ..data import SHAPES, SeqData, check_X, with_sizes_of
from ..errors import IncompatibleError, SeqbenchError

#: seeds are ints in [0, SEED_LIMIT): numpy's and torch's seed range
SEED_LIMIT = 2**32

DEFAULT_TAGS: dict[str, Any] = {
    "input_kinds": ("tokens", "real"),
    "target_kinds": ("classes", "real"),
    "shapes": SHAPES,
    "forecasting_only": False,
    "uses_torch": False,
    "device_aware": False,
    "deterministic": True,
    "seeded": False,
    "predict_proba": True,
}


class SeqModel(BaseEstimator):
    """Base class of seqbench models (see the module docstring for the contract).

    ``version`` enters the job hash: bump it whenever a change alters what the model
    computes for the same parameters, data and seed (beyond float rounding), or a rerun
    would reuse the stored results of the old code (``tests/test_fingerprints.py`` fails
    until it is bumped)."""

    _tags: ClassVar[dict[str, Any]] = {}
    version: ClassVar[int] = 1

    # -- tags ------------------------------------------------------------------------
    @classmethod
    def tags(cls) -> dict[str, Any]:
        out = dict(DEFAULT_TAGS)
        for klass in reversed(cls.__mro__):
            out.update(getattr(klass, "_tags", {}) or {})
        return out

    def incompatibility(
        self, data: SeqData, shape: str | None = None, needs_proba: bool = False
    ) -> str | None:
        """Why this model cannot handle ``data`` (of problem ``shape``, scored by a metric
        that needs class probabilities when ``needs_proba``), or ``None``."""
        tags = self.tags()
        name = type(self).__name__
        if shape is not None and shape not in SHAPES:
            raise SeqbenchError(f"shape: expected None or one of {', '.join(SHAPES)}, "
                                f"got {shape!r}")
        if data.input_kind not in tags["input_kinds"]:
            return f"{name} takes {' or '.join(tags['input_kinds'])} inputs, not {data.input_kind}"
        if data.target_kind not in tags["target_kinds"]:
            return (f"{name} predicts {' or '.join(tags['target_kinds'])} targets, "
                    f"not {data.target_kind}")
        if shape is not None and shape not in tags["shapes"]:
            return f"{name} does not handle the {shape} shape"
        if tags["forecasting_only"] and not data.forecasting:
            return f"{name} only handles forecasting tasks (Y[t] = X[t+1])"
        if needs_proba and data.target_kind == "classes" and not tags["predict_proba"]:
            return f"{name} offers no predict_proba, which the task's metric needs"
        return None

    # -- public API --------------------------------------------------------------------
    def fit(self, data: SeqData, valid: SeqData | None = None, *, shape: str | None = None):
        """Fit on ``data``; ``valid`` (optional) is used for early stopping or model choice.

        ``valid`` must have the input and target kinds of ``data``, the same D and K for
        real inputs and targets, and token and class ids within ``data``'s sizes (it is
        handed to ``_fit`` with ``data``'s sizes). ``shape`` (optional) is the problem
        shape, one of :data:`~seqbench.data.SHAPES`."""
        if not isinstance(data, SeqData):
            raise SeqbenchError(f"fit: expected SeqData, got {type(data).__name__}")
        why = self.incompatibility(data, shape)
        if why:
            raise IncompatibleError(why)
        if valid is not None:
            if not isinstance(valid, SeqData):
                raise SeqbenchError(f"fit: expected SeqData for valid, got {type(valid).__name__}")
            valid = with_sizes_of(valid, data, name="valid", reference="train")
        self.input_kind_ = data.input_kind
        self.input_size_ = data.input_size
        self.target_kind_ = data.target_kind
        self.target_size_ = data.target_size
        try:
            self._fit(data, valid)
        except BaseException:
            # a failed fit leaves no fitted model behind: the public methods say so
            for attr in ("input_kind_", "input_size_", "target_kind_", "target_size_"):
                self.__dict__.pop(attr, None)
            raise
        return self

    def _check_fitted(self) -> None:
        """Raise a one-line :class:`SeqbenchError` unless the model has been fitted."""
        if not hasattr(self, "input_kind_"):
            raise SeqbenchError(f"{type(self).__name__} is not fitted yet: call fit first")

    def _check_fitted_X(self, X) -> np.ndarray:
        self._check_fitted()
        return check_X(X, input_kind=self.input_kind_, input_size=self.input_size_)

    def predict(self, X) -> np.ndarray:
        """Per-step predictions aligned with ``Y``: (N, T) class ids or (N, T, K) floats."""
        X = self._check_fitted_X(X)
        N, T = X.shape[:2]
        if self.target_kind_ == "classes" and type(self)._predict is SeqModel._predict:
            # the class ids are the argmax of _predict_proba: check what the model wrote
            return self._checked_proba(X).argmax(-1)
        expected = (N, T) if self.target_kind_ == "classes" else (N, T, self.target_size_)
        return self._shape_checked(self._predict(X), "_predict", expected)

    def _shape_checked(self, out, method: str, expected: tuple[int, ...]) -> np.ndarray:
        out = np.asarray(out)
        if out.shape != tuple(expected):
            raise AssertionError(f"{type(self).__name__}.{method} returned shape {out.shape}, "
                                 f"expected {tuple(expected)}")
        return out

    def _checked_proba(self, X: np.ndarray) -> np.ndarray:
        N, T = X.shape[:2]
        return self._shape_checked(self._predict_proba(X), "_predict_proba",
                                   (N, T, self.target_size_))

    def predict_proba(self, X) -> np.ndarray:
        """(N, T, K) class probabilities; only for class targets."""
        X = self._check_fitted_X(X)
        if self.target_kind_ != "classes":
            raise SeqbenchError("predict_proba: only defined for class targets")
        if not self.tags()["predict_proba"]:
            raise SeqbenchError(f"{type(self).__name__} does not offer predict_proba")
        return self._checked_proba(X)

    def n_parameters(self) -> int:
        """Number of fitted parameters (0 where the notion does not apply); needs a fit."""
        self._check_fitted()
        return int(self._n_parameters())

    def training_curve(self) -> list[dict[str, float]]:
        """Validation metric against training steps, where the model records one."""
        return list(getattr(self, "curve_", []) or [])

    def diagnostics(self, data: SeqData) -> dict[str, Any]:
        """Model-specific probes of the fitted model on ``data`` (gradient decay, ...); none
        by default. Needs a fit, and ``data`` with inputs of the kind and size seen in it."""
        self._check_fitted()
        if not isinstance(data, SeqData):
            raise SeqbenchError(f"diagnostics: expected SeqData, got {type(data).__name__}")
        self._check_fitted_X(data.X)
        return self._diagnostics(data)

    # -- what subclasses implement ---------------------------------------------------
    def _check_params(self) -> None:
        """Validate the parameters' values (not the data); raise :class:`SeqbenchError`.

        Called by the suite loader on every model configuration, so a bad value in a
        suite file is an error before anything runs; a model calls it in ``_fit`` too.
        """

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.target_kind_ == "classes":
            return self._predict_proba(X).argmax(-1)
        raise NotImplementedError

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _n_parameters(self) -> int:
        """Number of fitted parameters; the model is fitted. 0 by default."""
        return 0

    def _diagnostics(self, data: SeqData) -> dict[str, Any]:
        """Probes of the fitted model on ``data`` (validated SeqData whose inputs have the
        kind and size seen in fit); none by default."""
        return {}


def is_device_name(device) -> bool:
    """Whether ``device`` is a device a model's ``device`` parameter may name: ``"auto"``,
    ``"cpu"``, ``"cuda"`` or ``"cuda:i"`` (whether this machine has it is checked at fit)."""
    return isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", device) is not None


def is_int(value: Any, low: int | None = None) -> bool:
    """An int (Python or numpy, not a bool), at least ``low`` where given: what a model's
    integer parameter must be."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    return ok and (low is None or value >= low)


def is_real(value: Any) -> bool:
    """A finite real number (a Python or numpy int or float, not a bool): what a model's
    numeric parameter must be."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return isinstance(value, int) or bool(np.isfinite(value))


def need(model, ok: bool, name: str, expected: str) -> None:
    """Refuse ``model``'s parameter ``name`` unless ``ok``, in one line that names what was
    expected and what came."""
    if not ok:
        raise SeqbenchError(f"{type(model).__name__} parameter {name!r}: expected {expected}, "
                            f"got {getattr(model, name)!r}")


def seed_of(random_state, owner=None) -> int:
    """An int seed from ``random_state`` (None -> 0, so unseeded runs are still repeatable):
    None, an int in [0, 2**32) (numpy's and torch's seed range) or a ``RandomState``.
    ``owner``, the model, is named in the error."""
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if is_int(random_state, 0) and random_state < SEED_LIMIT:
        return int(random_state)
    who = f"{type(owner).__name__} parameter " if owner is not None else ""
    raise SeqbenchError(f"{who}'random_state': expected None or an int in [0, 2**32), got "
                        f"{random_state!r}")


# -- moments by blocks (no whole copy of the data) -----------------------------------------
def block_moments(blocks) -> tuple[np.ndarray, np.ndarray]:
    """Column means and (population) standard deviations of the rows of the 2-d blocks that
    ``blocks()`` yields, as ``np.mean``/``np.std`` of the stacked rows give them, without
    stacking them: ``blocks`` is called twice (sums, then squared deviations from the
    mean), so neither the rows nor their deviations ever exist whole."""
    count, total = 0, 0.0
    for b in blocks():
        total = total + np.asarray(b, dtype=np.float64).sum(axis=0)
        count += len(b)
    mean = total / max(count, 1)
    sq = 0.0
    for b in blocks():
        dev = np.asarray(b, dtype=np.float64) - mean  # (M_b, d), a new array
        np.square(dev, out=dev)  # (a - mean)^2
        sq = sq + dev.sum(axis=0)
    return mean, np.sqrt(sq / max(count, 1))


def sequence_moments(a: np.ndarray, mask: np.ndarray | None = None,
                     block_bytes: int = 16 * 2**20) -> tuple[np.ndarray, np.ndarray]:
    """:func:`block_moments` of each component of ``a`` (N, T, d) over the steps where
    ``mask`` (N, T) is True (every step when None), in blocks of sequences of about
    ``block_bytes``."""
    rows = max(1, block_bytes // max(a[:1].nbytes, 1))

    def blocks():
        for s in range(0, len(a), rows):
            b = a[s:s + rows]  # (n, T, d)
            yield b.reshape(-1, b.shape[-1]) if mask is None else b[mask[s:s + rows]]

    return block_moments(blocks)
