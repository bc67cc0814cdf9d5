"""The task base class: seeded sampling, splits, spec and scoring.

A task is a generator of :class:`~seqbench.data.SeqData` whose parameters are its
constructor arguments (stored as given; checked by :meth:`Task.check`). Subclasses
implement :meth:`Task.spec` and :meth:`Task._sample`; tasks with their own scoring
rule (a pass criterion, say) extend :meth:`Task.score`.

Bounds every built-in task holds its parameters to (checked by ``check``, so
:func:`~seqbench.registry.make_task` and the suite loader refuse a value beyond them with a
one-line error instead of a ``MemoryError`` or an overflow deep inside sampling):

* a length-like parameter (a sequence length, a lag, a gap, a count of steps or of pairs)
  is at most :data:`MAX_LENGTH` = 10**6 steps;
* a vocabulary-like parameter (a number of tokens, symbols, keys, values or classes) is
  at most :data:`MAX_VOCAB` = 10**6;
* a float parameter is finite (no NaN or infinity), and a scale (a standard deviation, a
  variance, a time step) at most :data:`MAX_SCALE` = 1e6, so that the data and the
  task's chance and oracle values are finite.

A task may hold a parameter to a tighter bound where its own computation needs one (each
task's docstring says so).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..data import SeqData, TaskSpec
from ..errors import SeqbenchError
from ..metrics import check_predictions, masked_metrics, sliced_metrics
from ..registry import param_defaults

SPLITS = ("train", "valid", "test")

#: the longest a length-like task parameter (a length, a lag, a gap) may be, in steps
MAX_LENGTH = 10**6
#: the largest a vocabulary-like task parameter (tokens, symbols, keys, classes) may be
MAX_VOCAB = 10**6
#: the largest a scale-like float task parameter (a standard deviation, a variance) may be
MAX_SCALE = 1e6


def is_int(value: Any) -> bool:
    """An int that is not a bool: what an integer parameter must be."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (not a bool): what a numeric parameter must be. (An int of any
    size is finite; ``np.isfinite`` would fail on one beyond 64 bits.)"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def bound_text(value: float) -> str:
    """A bound as the messages write it: ``10**6`` for an int power of ten from 10**4 up,
    ``1e6`` for such a float, else the number itself (``%g``)."""
    if value >= 1e4:
        k = round(math.log10(value))
        if isinstance(value, int) and value == 10**k:
            return f"10**{k}"
        if isinstance(value, float) and value == 10.0**k:
            return f"1e{k}"
    return f"{value:g}"


class Task:
    """Base class of every task.

    Class attributes: ``name`` (the registry name; left empty, the registry fills it in
    with the name the class is registered under), ``version`` (bumped whenever the
    data a seed produces changes; it enters the job hash) and ``default_sizes``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    default_sizes: ClassVar[dict[str, int]] = {"n_train": 1000, "n_valid": 200, "n_test": 500}

    # -- parameters -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The task's parameters (every constructor argument, defaults included)."""
        return {k: getattr(self, k) for k in param_defaults(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def check(self) -> None:
        """Validate the parameters; raise :class:`SeqbenchError` naming the bad one."""

    def _require(self, ok: bool, param: str, expected: str) -> None:
        if not ok:
            raise SeqbenchError(
                f"task {self.name!r}, parameter {param!r}: expected {expected}, "
                f"got {getattr(self, param)!r}"
            )

    def _require_int(self, param: str, lo: int, hi: int | None = None, note: str = "") -> None:
        """``param`` is an int (not a bool) in ``[lo, hi]`` (``hi=None``: no upper bound);
        the message reads "an int >= lo and <= hi" plus ``note``."""
        value = getattr(self, param)
        ok = is_int(value) and value >= lo and (hi is None or value <= hi)
        upper = "" if hi is None else f" and <= {bound_text(hi)}"
        self._require(ok, param, f"an int >= {lo}{upper}{note}")

    def _require_number(self, param: str, lo: float, hi: float, *, open_lo: bool = False,
                        note: str = "") -> None:
        """``param`` is a finite number (not a bool) in ``[lo, hi]``, or ``(lo, hi]`` with
        ``open_lo``; the message reads "a finite number > lo and <= hi" plus ``note``."""
        value = getattr(self, param)
        ok = is_number(value) and (value > lo if open_lo else value >= lo) and value <= hi
        self._require(ok, param, f"a finite number {'>' if open_lo else '>='} {lo:g} and <= "
                                 f"{bound_text(hi)}{note}")

    def _check_seed(self, seed) -> None:
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise SeqbenchError(f"task {self.name!r}: expected a seed that is an int >= 0 "
                                f"(None would draw different data each time), got {seed!r}")

    # -- what subclasses implement ---------------------------------------------------
    def spec(self) -> TaskSpec:
        raise NotImplementedError

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        """Draw ``n`` sequences with ``rng``. Parameters are already checked."""
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------
    def sample(self, n: int, seed: int | np.random.SeedSequence = 0) -> SeqData:
        """``n`` sequences drawn deterministically from ``seed`` (same seed, same bytes):
        an int >= 0 or a ``numpy.random.SeedSequence``."""
        self.check()
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise SeqbenchError(f"task {self.name!r}: expected a positive sample size, got {n!r}")
        if not isinstance(seed, np.random.SeedSequence):
            self._check_seed(seed)
        data = self._sample(int(n), np.random.default_rng(seed))
        spec = self.spec()
        if (data.input_kind, data.target_kind) != (spec.input_kind, spec.target_kind):
            raise AssertionError(f"task {self.name!r} produced data that disagrees with its spec")
        return data

    def splits(
        self,
        seed: int = 0,
        n_train: int | None = None,
        n_valid: int | None = None,
        n_test: int | None = None,
    ) -> tuple[SeqData, SeqData, SeqData]:
        """Train, valid and test sets. Each split draws from its own child of ``seed``
        (``SeedSequence([seed, k])`` for split k), so no two splits share a stream.
        ``n_valid=0`` gives ``None`` for the validation set."""
        self._check_seed(seed)
        sizes = dict(self.default_sizes)
        for key, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
            if value is not None:
                sizes[key] = value
        return tuple(  # type: ignore[return-value]
            self.sample(sizes[f"n_{split}"], np.random.SeedSequence([int(seed), k]))
            if not (split == "valid" and sizes["n_valid"] == 0) else None
            for k, split in enumerate(SPLITS)
        )

    def score(
        self, data: SeqData, pred: np.ndarray, proba: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Metrics of predictions on ``data``: overall, and per slice of each ``slice_by``
        meta column. Returns ``{"metrics": {...}, "slices": {column: {value: {...}}}}``."""
        check_predictions(data, pred, proba)
        spec = self.spec()
        metrics = masked_metrics(data.Y, data.mask, pred, proba)
        metrics.update(self.extra_metrics(data, pred, proba))
        slices = {c: sliced_metrics(data, pred, proba, c) for c in spec.slice_by}
        return {"metrics": metrics, "slices": slices}

    def extra_metrics(
        self, data: SeqData, pred: np.ndarray, proba: np.ndarray | None
    ) -> dict[str, float]:
        """Task-specific metrics (a published pass rule, say); none by default."""
        return {}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Predictions of the task's oracle (true-parameter model) where it has one."""
        return None
