"""Copy memory (delayed many-to-many): reproduce 10 symbols after a long blank gap.

Source: the copying memory problem of Arjovsky, Shah & Bengio (2016), "Unitary
evolution recurrent neural networks".

Exact definition
----------------
Tokens: 0 is the blank a0, ``1..n_symbols`` the symbols a1..a8, ``n_symbols + 1``
the delimiter a9. With ``T = blanks`` (Arjovsky et al.'s T; the convention fixed
here: **T counts the steps between the last symbol to copy and the first output
step, that is T - 1 blanks and the delimiter**), every sequence has length
``T + 2 * n_copy`` (``T + 20`` by default):

* input: ``n_copy`` symbols drawn i.i.d. uniformly from a1..a8, then ``T - 1``
  blanks, the delimiter, then ``n_copy`` blanks (while the answer is emitted);
* target: ``T + n_copy`` blanks, then the ``n_copy`` symbols in their order.

Target classes are the blank (0) and the symbols (``1..n_symbols``), so a class id
equals the token id it names. Each symbol is reproduced ``T + n_copy`` steps after
it was read: ``meta["lag"] = T + n_copy``.

Which positions are scored (``scored``)
---------------------------------------
* ``"output"`` (default): the ``n_copy`` output positions only, the
  encoder-decoder reading. Chance (the best input-blind predictor: uniform over the
  symbols) is cross-entropy ``log(n_symbols)`` and accuracy ``1 / n_symbols``.
* ``"all"``: every one of the ``T + 2 n_copy`` positions, Arjovsky et al.'s
  convention. The best input-blind predictor (which knows only the step index)
  says "blank" with certainty for the first ``T + n_copy`` steps and is uniform
  over the symbols for the last ``n_copy``: cross-entropy
  ``n_copy * log(n_symbols) / (T + 2 n_copy)`` = ``10 log 8 / (T + 20)``, the
  baseline of the paper. A position-blind predictor (such as the ``chance``
  model, which predicts the marginal class frequencies everywhere) scores worse.

The primary metric is the cross-entropy (lower is better; a perfect model scores
0). Extra metrics: ``sequence_accuracy``, the fraction of sequences whose
``n_copy`` symbols are all reproduced, and ``output_accuracy``, the accuracy on the
output positions (equal to ``accuracy`` with ``scored="output"``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec, one_hot
from .base import MAX_LENGTH, MAX_VOCAB, Task


class CopyMemory(Task):
    """Copy ``n_copy`` symbols across ``blanks`` blank steps (Arjovsky et al. 2016).

    Parameters
    ----------
    blanks : T, the blanks between the symbols and the output (delimiter included), 1 to
        10**6.
    n_symbols : alphabet size of the symbols to copy (8 in the paper), 2 to 10**6.
    n_copy : how many symbols to copy (10 in the paper), 1 to 10**6.
    scored : ``"output"`` (the output positions) or ``"all"`` (every position).

    Meta columns
    ------------
    One row per sequence:

    lag : ``blanks + n_copy`` (int), the same for every sequence: the steps between
        reading a symbol (step k, 0-based) and emitting it (step ``blanks + n_copy + k``);
        the column ``score`` slices by (one slice).
    """

    name = "copy-memory"
    version = 1

    def __init__(self, blanks: int = 100, n_symbols: int = 8, n_copy: int = 10,
                 scored: str = "output") -> None:
        self.blanks = blanks
        self.n_symbols = n_symbols
        self.n_copy = n_copy
        self.scored = scored

    def check(self) -> None:
        self._require_int("blanks", 1, MAX_LENGTH)
        self._require_int("n_symbols", 2, MAX_VOCAB)
        self._require_int("n_copy", 1, MAX_LENGTH)
        self._require(self.scored in ("output", "all"), "scored", "'output' or 'all'")

    @property
    def delimiter(self) -> int:
        return self.n_symbols + 1

    @property
    def vocab(self) -> tuple[str, ...]:
        return ("blank", *(f"a{k}" for k in range(1, self.n_symbols + 1)), "delimiter")

    def chance_cross_entropy(self) -> float:
        """Cross-entropy of the best input-blind predictor on the scored positions."""
        if self.scored == "output":
            return math.log(self.n_symbols)
        return self.n_copy * math.log(self.n_symbols) / (self.blanks + 2 * self.n_copy)

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=self.n_symbols + 2,
            target_kind="classes", target_size=self.n_symbols + 1,
            shape="many-to-many-delayed", metric="cross_entropy", higher_is_better=False,
            chance=self.chance_cross_entropy(), perfect=0.0, slice_by=("lag",),
            vocab=self.vocab, classes=self.vocab[:-1],
            description=f"reproduce {self.n_copy} symbols after {self.blanks} blanks",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T, K = self.blanks, self.n_copy
        length = T + 2 * K
        symbols = rng.integers(1, self.n_symbols + 1, size=(n, K))  # (N, K)
        X = np.zeros((n, length), dtype=np.int64)  # (N, T + 2K)
        X[:, :K] = symbols
        X[:, K + T - 1] = self.delimiter  # after T - 1 blanks
        Y = np.zeros((n, length), dtype=np.int64)
        Y[:, T + K:] = symbols  # the output region: the last K steps
        mask = np.zeros((n, length), dtype=bool)
        if self.scored == "output":
            mask[:, T + K:] = True
        else:
            mask[:] = True
        meta = pd.DataFrame({"lag": np.full(n, T + K)})
        return SeqData(X, Y, mask, meta, input_size=self.n_symbols + 2,
                       target_size=self.n_symbols + 1)

    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        K = self.n_copy
        out_true = data.Y[:, -K:]  # (N, K)
        out_pred = pred[:, -K:]
        return {
            "output_accuracy": float(np.mean(out_pred == out_true)),
            "sequence_accuracy": float(np.mean(np.all(out_pred == out_true, axis=1))),
        }

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """Blanks everywhere except the output region, which repeats the first symbols."""
        K = self.n_copy
        pred = np.zeros_like(data.X)
        pred[:, -K:] = data.X[:, :K]
        proba = one_hot(pred, self.n_symbols + 1)  # (N, T, K)
        return pred, proba
