"""The one data contract every task produces and every model consumes.

Shape legend used throughout seqbench: N sequences, T steps, D input size,
K target size (number of classes, or target dimension for real targets).

* ``X``: ``(N, T)`` integer tokens, or ``(N, T, D)`` floats.
* ``Y``: ``(N, T)`` integer class ids, or ``(N, T, K)`` floats.
* ``mask``: ``(N, T)`` bool, the positions that are scored.
* ``meta``: a per-sequence :class:`pandas.DataFrame` with N rows (lag, ...).

Every problem shape of the lecture is per-step supervision with a mask:
many-to-one scores the last step, synced many-to-many every step, delayed
many-to-many only the output region, one-to-many the steps after a cue at
step 0, and one-to-one has T = 1. Sequences of different lengths are padded on
the right; the padding is never scored, and a causal model's scored outputs never
see it (the HMM's ``decode="posterior"`` and ``"viterbi"`` read whole rows, padding
included, by design: they look ahead).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import SeqbenchError

INPUT_KINDS = ("tokens", "real")
TARGET_KINDS = ("classes", "real")
PROBA_METRICS = ("cross_entropy",)
SHAPES = (
    "many-to-one",
    "many-to-many-synced",
    "many-to-many-delayed",
    "one-to-many",
    "one-to-one",
)


def input_kind_of(X: np.ndarray) -> str:
    """``"tokens"`` for an integer (N, T) array, ``"real"`` for a float (N, T, D) one."""
    X = np.asarray(X)
    if X.ndim == 2 and np.issubdtype(X.dtype, np.integer):
        return "tokens"
    if X.ndim == 3 and np.issubdtype(X.dtype, np.floating):
        return "real"
    raise SeqbenchError(
        "X: expected (N, T) integer tokens or (N, T, D) floats, "
        f"got shape {X.shape} of dtype {X.dtype}"
    )


@dataclass(frozen=True)
class TaskSpec:
    """What a task produces and how it is scored.

    ``chance`` is the primary metric's score of the best input-blind predictor;
    ``oracle`` the score of the best possible model where one is known (for
    example the Kalman filter or Viterbi decoding with the generator's true
    parameters), else ``None`` (a perfect score is then the reference).
    """

    name: str
    version: int
    input_kind: str
    input_size: int
    target_kind: str
    target_size: int
    shape: str
    metric: str
    higher_is_better: bool
    chance: float
    oracle: float | None = None
    perfect: float | None = None
    forecasting: bool = False
    slice_by: tuple[str, ...] = ()
    vocab: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_choice("TaskSpec.input_kind", self.input_kind, INPUT_KINDS)
        _check_choice("TaskSpec.target_kind", self.target_kind, TARGET_KINDS)
        _check_choice("TaskSpec.shape", self.shape, SHAPES)
        for name in ("input_size", "target_size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise SeqbenchError(f"TaskSpec.{name}: expected a positive int, got {value!r}")

    @property
    def needs_proba(self) -> bool:
        """Whether the primary metric is computed from class probabilities."""
        return self.metric in PROBA_METRICS

    @property
    def best(self) -> float:
        """The reference top score: the oracle where known, else a perfect score."""
        if self.oracle is not None:
            return float(self.oracle)
        if self.perfect is not None:
            return float(self.perfect)
        return 1.0 if self.higher_is_better else 0.0

    def normalise(self, score: float) -> float:
        """Map ``score`` so that chance is 0 and the oracle (or a perfect score) is 1."""
        return normalised_score(score, self.chance, self.best)


def normalised_score(score, chance, best):
    """``(score - chance) / (best - chance)``: 0 = chance, 1 = the best reference score
    (NaN when the score is missing or not finite, or best equals chance). Numbers give a
    float; arrays (one value per element) an array."""
    score = np.asarray(np.nan if score is None else score, dtype=float)
    span = np.asarray(best, dtype=float) - chance
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((span != 0) & np.isfinite(score), (score - chance) / span, np.nan)
    return float(out) if out.ndim == 0 else out


def _check_choice(field_name: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise SeqbenchError(
            f"{field_name}: expected one of {', '.join(accepted)}, got {value!r}"
        )


@dataclass(eq=False)
class SeqData:
    """Sequences with per-step targets and a mask of the scored positions.

    Validated on construction; a bad field raises :class:`SeqbenchError`
    (a ``ValueError``) naming the field, what was expected and what came.

    ``input_size`` is the vocabulary size for tokens or D for real inputs;
    ``target_size`` the number of classes or K. Tasks set both; where they are
    left ``None`` they are inferred from the arrays. ``forecasting`` says that
    ``Y[t] = X[t + 1]``, so generative models may treat X as their observations.
    """

    X: np.ndarray
    Y: np.ndarray
    mask: np.ndarray
    meta: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    input_size: int | None = None
    target_size: int | None = None
    forecasting: bool = False

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        Y = np.asarray(self.Y)
        mask = np.asarray(self.mask)
        self.input_kind = input_kind_of(X)
        N, T = X.shape[:2]
        if N < 1 or T < 1:
            raise SeqbenchError(
                f"X: expected at least one sequence of one step, got shape {X.shape}"
            )
        if Y.ndim == 2 and np.issubdtype(Y.dtype, np.integer):
            self.target_kind = "classes"
        elif Y.ndim == 3 and np.issubdtype(Y.dtype, np.floating):
            self.target_kind = "real"
        else:
            raise SeqbenchError(
                "Y: expected (N, T) integer class ids or (N, T, K) floats, "
                f"got shape {Y.shape} of dtype {Y.dtype}"
            )
        if Y.shape[:2] != (N, T):
            raise SeqbenchError(f"Y: expected leading shape (N, T) = {(N, T)}, got {Y.shape[:2]}")
        if mask.dtype != np.bool_:
            raise SeqbenchError(f"mask: expected dtype bool, got {mask.dtype}")
        if mask.shape != (N, T):
            raise SeqbenchError(f"mask: expected shape (N, T) = {(N, T)}, got {mask.shape}")
        if not mask.any():
            raise SeqbenchError("mask: expected at least one scored position, got none")
        if self.input_kind == "real" and not np.isfinite(X).all():
            raise SeqbenchError("X: expected finite values, got NaN or infinity")
        if self.input_kind == "tokens" and X.min() < 0:
            raise SeqbenchError(f"X: expected non-negative token ids, got minimum {X.min()}")
        if self.target_kind == "real" and not np.isfinite(Y[mask]).all():
            raise SeqbenchError(
                "Y: expected finite values at scored positions, got NaN or infinity"
            )
        if self.target_kind == "classes" and Y[mask].min() < 0:
            raise SeqbenchError(
                f"Y: expected non-negative class ids at scored positions, got {Y[mask].min()}"
            )
        for name in ("input_size", "target_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | np.integer) or isinstance(v, bool)
                                  or v < 1):
                raise SeqbenchError(f"{name}: expected None or an int >= 1, got {v!r}")
        if self.input_kind == "real" and X.shape[2] < 1:
            raise SeqbenchError(f"X: expected at least one input feature, got shape {X.shape}")
        if self.target_kind == "real" and Y.shape[2] < 1:
            raise SeqbenchError(f"Y: expected at least one target column, got shape {Y.shape}")
        if self.input_size is None:
            self.input_size = int(X.max()) + 1 if self.input_kind == "tokens" else X.shape[2]
        elif self.input_kind == "real" and self.input_size != X.shape[2]:
            raise SeqbenchError(f"input_size: expected D = {X.shape[2]}, got {self.input_size}")
        elif self.input_kind == "tokens" and X.max() >= self.input_size:
            raise SeqbenchError(
                f"X: expected token ids below input_size {self.input_size}, got {X.max()}"
            )
        if self.target_size is None:
            self.target_size = (
                int(Y[mask].max()) + 1 if self.target_kind == "classes" else Y.shape[2]
            )
        elif self.target_kind == "real" and self.target_size != Y.shape[2]:
            raise SeqbenchError(f"target_size: expected K = {Y.shape[2]}, got {self.target_size}")
        elif self.target_kind == "classes" and Y[mask].max() >= self.target_size:
            raise SeqbenchError(
                f"Y: expected class ids below target_size {self.target_size}, got {Y[mask].max()}"
            )
        meta = self.meta
        if meta is None:
            meta = pd.DataFrame(index=range(N))
        elif not isinstance(meta, pd.DataFrame):
            raise SeqbenchError(f"meta: expected a pandas DataFrame, got {type(meta).__name__}")
        elif len(meta) != N:
            raise SeqbenchError(f"meta: expected {N} rows (one per sequence), got {len(meta)}")
        self.X, self.Y, self.mask, self.meta = X, Y, mask, meta.reset_index(drop=True)
        self.input_size, self.target_size = int(self.input_size), int(self.target_size)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def T(self) -> int:
        return self.X.shape[1]

    def __len__(self) -> int:
        return self.n

    def subset(self, index) -> SeqData:
        """The sequences selected by ``index`` (a slice, an index array or a bool mask)."""
        index = np.arange(self.n)[index]
        return SeqData(
            self.X[index], self.Y[index], self.mask[index],
            self.meta.iloc[index].reset_index(drop=True),
            input_size=self.input_size, target_size=self.target_size,
            forecasting=self.forecasting,
        )

    def nbytes(self) -> int:
        return int(self.X.nbytes + self.Y.nbytes + self.mask.nbytes)

    def fingerprint(self) -> str:
        """A digest of the arrays and meta: equal data gives equal fingerprints."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.X, self.Y, self.mask):
            h.update(str((a.dtype, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(pd.util.hash_pandas_object(self.meta, index=True).values.tobytes())
        return h.hexdigest()


def with_sizes_of(data: SeqData, like: SeqData, *, name: str = "valid",
                  reference: str = "train") -> SeqData:
    """``data`` with the input and target sizes of ``like`` (the training split, say), or a
    one-line :class:`SeqbenchError` naming ``name``'s field where that is impossible.

    The kinds must agree, and so must D and K for real inputs and targets. A vocabulary
    or a number of classes is a different matter: where it was inferred from the ids
    present, a validation split that happens to lack the largest token or class id is
    smaller, so ``data`` is taken as long as its token ids (and its class ids at scored
    positions) are below ``like``'s sizes. ``data`` itself is returned when the sizes
    already agree; otherwise a new SeqData on the same arrays."""
    for attr in ("input_kind", "target_kind"):
        a, b = getattr(like, attr), getattr(data, attr)
        if a != b:
            raise SeqbenchError(f"{name}.{attr}: expected {a!r} as in {reference}, got {b!r}")
    if data.input_kind == "real" and data.input_size != like.input_size:
        raise SeqbenchError(f"{name}.input_size: expected D = {like.input_size} as in "
                            f"{reference}, got {data.input_size}")
    if data.target_kind == "real" and data.target_size != like.target_size:
        raise SeqbenchError(f"{name}.target_size: expected K = {like.target_size} as in "
                            f"{reference}, got {data.target_size}")
    if (data.input_size, data.target_size) == (like.input_size, like.target_size):
        return data
    if data.input_kind == "tokens" and int(data.X.max()) >= like.input_size:
        raise SeqbenchError(
            f"{name}.X: expected token ids below {like.input_size} ({reference}'s input_size; "
            f"declare a larger vocabulary with SeqData(..., input_size=)), got {data.X.max()}")
    if data.target_kind == "classes" and int(data.Y[data.mask].max()) >= like.target_size:
        raise SeqbenchError(
            f"{name}.Y: expected class ids below {like.target_size} ({reference}'s "
            f"target_size; declare more classes with SeqData(..., target_size=)), got "
            f"{data.Y[data.mask].max()}")
    return dataclasses.replace(data, input_size=like.input_size, target_size=like.target_size)


def one_hot(ids: np.ndarray, k: int) -> np.ndarray:
    """``ids`` (any shape) as one-hot float rows of ``k`` classes, (..., k), without the
    (k, k) identity that ``np.eye(k)[ids]`` builds first."""
    ids = np.asarray(ids)
    out = np.zeros((*ids.shape, k))
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def check_X(X, *, input_kind: str, input_size: int, name: str = "X") -> np.ndarray:
    """Validate inputs given to ``predict`` against what the model was fitted on."""
    if isinstance(X, SeqData):
        raise SeqbenchError(f"{name}: expected an array of inputs, got SeqData "
                            f"(pass its inputs: data.X)")
    X = np.asarray(X)
    kind = input_kind_of(X)
    if kind != input_kind:
        raise SeqbenchError(f"{name}: expected {input_kind} inputs as in fit, got {kind}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise SeqbenchError(f"{name}: expected at least one sequence of at least one step, "
                            f"got shape {X.shape}")
    if kind == "real":
        if X.shape[2] != input_size:
            raise SeqbenchError(f"{name}: expected D = {input_size} as in fit, got {X.shape[2]}")
        if not np.isfinite(X).all():
            raise SeqbenchError(f"{name}: expected finite values, got NaN or infinity")
    elif X.min() < 0 or X.max() >= input_size:
        raise SeqbenchError(
            f"{name}: expected token ids in [0, {input_size}) as in fit, "
            f"got range [{X.min()}, {X.max()}]"
        )
    return X
