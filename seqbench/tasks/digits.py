"""Sequential digits: classify a handwritten digit read one pixel at a time (many-to-one).

The data are scikit-learn's 8x8 digits (``sklearn.datasets.load_digits``; 1797
images, the test set of the UCI "Optical Recognition of Handwritten Digits" data
set, Alpaydin & Kaynak 1998), shipped with scikit-learn, so nothing is downloaded.
The task is the small-scale counterpart of sequential MNIST (Le, Jaitly & Hinton
2015, "A simple way to initialize recurrent networks of rectified linear units"),
and ``digits-permuted`` of their permuted MNIST.

Exact definition
----------------
* An image's 64 pixels (values 0..16) are read row by row, left to right, as 64
  steps of one real input, scaled to ``[0, 1]`` by dividing by 16: ``X`` is
  ``(N, 64, 1)``.
* ``digits-permuted`` reads the pixels in a fixed order instead: step t shows pixel
  ``perm[t]`` with ``perm = np.random.default_rng(permutation_seed).permutation(64)``,
  the same for every image and every split.
* The target is the digit (10 classes), scored at the last step only; ``Y`` is 0
  and unscored elsewhere. ``meta`` holds each example's ``image`` (its index in
  ``load_digits()``) and ``digit``.

Splits: the 1797 images are a fixed pool. ``splits(seed)`` shuffles the pool with
``np.random.default_rng(seed)``, interleaves it by digit (stratified: every split holds
each digit's share of the pool to within two images, see :func:`stratified_order`) and
deals the test set first, then the validation set, then the training set, without
overlap; so the test set for a seed does not change with the training size.
Requested sizes beyond the pool are capped in that order (each split gets what
remains, up to its size; defaults 1097 / 200 / 500 use the whole pool); a split left
empty is an error, except that ``n_valid=0`` asks for no validation set (``None``).
``sample(n, seed)`` draws ``n`` distinct images, unstratified (an error when
``n > 1797``).

Chance: the best input-blind predictor always says the most frequent digit of the
pool, 3, which is 183 of the 1797 images: accuracy ``183 / 1797 = 0.1018``
(computed from the data). No oracle is known; a perfect score is 1.
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from ..errors import SeqbenchError
from .base import Task, is_int

N_PIXELS = 64
N_CLASSES = 10


@cache
def load_pool() -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, digits)``: (1797, 64) floats in [0, 1] and (1797,) ints (read-only)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = d.data.astype(float) / 16.0  # row-major 8x8 -> 64, scaled to [0, 1]
    digits = d.target.astype(np.int64)
    pixels.flags.writeable = digits.flags.writeable = False
    return pixels, digits


def stratified_order(seed: int) -> np.ndarray:
    """The pool's images in the order the splits are dealt from, (1797,): shuffled by
    ``rng = np.random.default_rng(seed)``, then interleaved by digit so that every prefix
    of length L holds each digit's share of the pool to within two images: the r-th image
    (in shuffled order) of a digit that has n images sits at key (r + u) / n, with u drawn
    uniform in [0, 1) per digit by ``rng`` (so which digits come first changes with the
    seed); equal keys keep the shuffled order."""
    digits = load_pool()[1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))
    offset = rng.random(N_CLASSES)
    shuffled = digits[order]
    rank = np.empty(len(order))
    for digit in np.unique(shuffled):
        members = np.flatnonzero(shuffled == digit)
        rank[members] = np.arange(len(members))
    key = (rank + offset[shuffled]) / np.bincount(digits, minlength=N_CLASSES)[shuffled]
    return order[np.argsort(key, kind="stable")]


class SequentialDigits(Task):
    """Classify an 8x8 digit read pixel by pixel in row order (64 steps, many-to-one).

    Data: scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``:
    1797 images, pixel values 0..16), loaded once per process; nothing is downloaded.
    Each image becomes one sequence of 64 steps with one real input: its pixels row by
    row, left to right, each divided by 16, so ``X`` is ``(N, 64, 1)`` with values in
    ``[0, 1]``.

    Target: the digit, 10 classes ``0``..``9``, scored at the last step (63) only; ``Y``
    is 0 and unscored elsewhere. The primary metric is accuracy (a perfect model scores
    1). Chance: the pool's most frequent digit, 3, on 183 of the 1797 images, accuracy
    ``183 / 1797 = 0.1018`` (computed from the data). No oracle is known.

    Parameters: none. The images are a fixed pool dealt into disjoint splits stratified by
    digit (test first, then validation, then training; see the module docstring); the
    default sizes 1097 / 200 / 500 use the whole pool.

    Meta columns
    ------------
    One row per sequence, ints:

    image : the image's index in ``load_digits()`` (0 to 1796).
    digit : its digit, the target (0 to 9); the column ``score`` slices by.
    """

    name = "digits"
    version = 2  # 2: stratified splits
    default_sizes: ClassVar[dict[str, int]] = {"n_train": 1097, "n_valid": 200, "n_test": 500}
    description: ClassVar[str] = "8x8 handwritten digits read pixel by pixel, row by row"

    def __init__(self) -> None:
        pass

    def order(self) -> np.ndarray:
        """The pixel shown at each step, (64,): the identity (row by row)."""
        return np.arange(N_PIXELS)

    def spec(self) -> TaskSpec:
        self.check()
        counts = np.bincount(load_pool()[1], minlength=N_CLASSES)
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=1, target_kind="classes", target_size=N_CLASSES,
            shape="many-to-one", metric="accuracy", higher_is_better=True,
            chance=float(counts.max() / counts.sum()), perfect=1.0,
            slice_by=("digit",), classes=tuple(str(k) for k in range(N_CLASSES)),
            description=self.description,
        )

    def _build(self, images: np.ndarray) -> SeqData:
        pixels, digits = load_pool()
        n = len(images)
        X = pixels[images][:, self.order(), None]  # (N, 64, 1)
        Y = np.zeros((n, N_PIXELS), dtype=np.int64)
        Y[:, -1] = digits[images]
        mask = np.zeros((n, N_PIXELS), dtype=bool)
        mask[:, -1] = True
        meta = pd.DataFrame({"image": images.astype(np.int64), "digit": digits[images]})
        return SeqData(X, Y, mask, meta, input_size=1, target_size=N_CLASSES)

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        pool = len(load_pool()[1])
        if n > pool:
            raise SeqbenchError(f"task {self.name!r}: expected at most {pool} images, got {n}")
        return self._build(rng.choice(pool, size=n, replace=False))

    def splits(self, seed: int = 0, n_train: int | None = None, n_valid: int | None = None,
               n_test: int | None = None) -> tuple[SeqData, SeqData, SeqData]:
        """Disjoint train, valid, test sets from one shuffle of the pool (test dealt first);
        ``n_valid=0`` gives ``None`` for the validation set."""
        self.check()
        self._check_seed(seed)
        sizes = dict(self.default_sizes)
        for key, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
            if value is not None:
                least = 0 if key == "n_valid" else 1
                if not isinstance(value, int | np.integer) or value < least:
                    raise SeqbenchError(
                        f"task {self.name!r}: expected an int >= {least} for {key}, got {value!r}")
                sizes[key] = int(value)
        order = stratified_order(seed)
        parts: dict[str, np.ndarray | None] = {"valid": None}
        start = 0
        for split in ("test", "valid", "train"):
            if split == "valid" and sizes["n_valid"] == 0:
                continue
            size = min(sizes[f"n_{split}"], len(order) - start)  # capped by what remains
            if size < 1:
                raise SeqbenchError(
                    f"task {self.name!r}: the {len(order)}-image pool leaves no {split} images "
                    f"after n_test={sizes['n_test']}, n_valid={sizes['n_valid']}")
            parts[split] = order[start: start + size]
            start += size
        valid = None if parts["valid"] is None else self._build(parts["valid"])
        return self._build(parts["train"]), valid, self._build(parts["test"])


class PermutedDigits(SequentialDigits):
    """Classify an 8x8 digit read pixel by pixel in a fixed random order (many-to-one).

    Parameters
    ----------
    permutation_seed : seed of the pixel order,
        ``np.random.default_rng(permutation_seed).permutation(64)``.

    Step t shows pixel ``perm[t]`` (pixels numbered row by row), the same order for every
    image and every split. Everything else (the data, target, chance, splits and meta)
    is as in :class:`SequentialDigits`.

    Meta columns
    ------------
    One row per sequence, ints:

    image : the image's index in ``load_digits()`` (0 to 1796).
    digit : its digit, the target (0 to 9); the column ``score`` slices by.
    """

    name = "digits-permuted"
    version = 2  # 2: stratified splits
    description: ClassVar[str] = "8x8 handwritten digits read pixel by pixel in a fixed order"

    def __init__(self, permutation_seed: int = 0) -> None:
        self.permutation_seed = permutation_seed

    def check(self) -> None:
        self._require(is_int(self.permutation_seed) and self.permutation_seed >= 0,
                      "permutation_seed", "an int >= 0")

    def order(self) -> np.ndarray:
        """The pixel shown at each step, (64,): a fixed permutation."""
        return np.random.default_rng(self.permutation_seed).permutation(N_PIXELS)
