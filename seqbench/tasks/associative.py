"""Multi-query associative recall: key-value pairs, a gap, then several queries.

Source: the multi-query associative recall (MQAR) task of Arora et al. (2023),
"Zoology: measuring and improving recall in efficient language models", used to
compare recurrent and attention models; single-query associative recall goes back
to Ba et al. (2016), "Using fast weights to attend to the recent past".

Exact definition
----------------
Tokens: ``<pad>`` (0), ``n_keys`` keys, ``n_values`` values and ``n_filler`` filler
tokens, in three disjoint ranges.

* ``n_pairs`` distinct keys are drawn uniformly without replacement; each gets a
  value drawn uniformly (with replacement) from the values. The context is
  ``k1 v1 k2 v2 ... kn vn``.
* ``lag`` filler tokens follow, drawn uniformly from the filler tokens (with
  ``lag_max``, a per-example gap uniform in ``[lag, lag_max]``; shorter examples are
  right-padded and never scored there).
* Then ``n_queries`` queries: distinct keys of the context drawn without
  replacement, one per step, in random order. No value is revealed after a query.
* Shape: synced many-to-many with a sparse mask. The target at each query step is
  the value bound to that key in the context, emitted at the step that reads the
  query; only the query steps are scored. (A rule that also works everywhere else
  and needs no delimiter: at a key, output the value that followed it earlier.)

Scores: primary metric accuracy over all scored queries. Values are uniform and
independent of everything a model could see without the context, so chance is
``1 / n_values`` (cross-entropy ``log n_values``) and a perfect model scores 1.
Extra metric ``sequence_accuracy``: the fraction of sequences with every query
right.

``meta``: ``lag`` (the gap of that example), ``query_lag_min`` / ``query_lag_max``
(steps from a query's key in the context to the query itself).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec, one_hot
from .base import MAX_LENGTH, MAX_VOCAB, Task, is_int

PAD = 0


class AssociativeRecall(Task):
    """Recall the values of several queried keys after a gap (MQAR).

    Parameters
    ----------
    n_pairs : key-value pairs in the context (1 to ``n_keys``, at most 10**6).
    n_queries : queries per sequence (distinct keys; at most ``n_pairs``).
    lag : filler tokens between the context and the first query (0 to 10**6).
    lag_max : if set, each example's gap is uniform in ``[lag, lag_max]`` (at most 10**6).
    n_keys : size of the key vocabulary (``n_pairs`` to 10**6).
    n_values : size of the value vocabulary (2 to 10**6); chance accuracy is
        ``1 / n_values``.
    n_filler : size of the filler vocabulary (1 to 10**6).

    Meta columns
    ------------
    One row per sequence, all ints:

    lag : the filler tokens between the context and the first query in that sequence:
        ``lag``, or its own draw from ``[lag, lag_max]``; the column ``score`` slices by.
    query_lag_min, query_lag_max : the smallest and the largest, over that sequence's
        queries, of the steps from the queried key in the context to the query (the
        query's step minus the key's step), in ``[lag + 2, 2 n_pairs + lag + n_queries - 1]``
        with that sequence's lag.
    """

    name = "associative-recall"
    version = 1

    def __init__(self, n_pairs: int = 8, n_queries: int = 4, lag: int = 0,
                 lag_max: int | None = None, n_keys: int = 32, n_values: int = 16,
                 n_filler: int = 8) -> None:
        self.n_pairs = n_pairs
        self.n_queries = n_queries
        self.lag = lag
        self.lag_max = lag_max
        self.n_keys = n_keys
        self.n_values = n_values
        self.n_filler = n_filler

    def check(self) -> None:
        self._require_int("n_pairs", 1, MAX_LENGTH)
        self._require(is_int(self.n_queries) and 1 <= self.n_queries <= self.n_pairs,
                      "n_queries", f"an int in [1, n_pairs = {self.n_pairs}]")
        self._require_int("lag", 0, MAX_LENGTH)
        self._require(
            self.lag_max is None or (is_int(self.lag_max)
                                     and self.lag <= self.lag_max <= MAX_LENGTH),
            "lag_max", "None or an int >= lag and <= 10**6",
        )
        self._require_int("n_keys", self.n_pairs, MAX_VOCAB, " (at least n_pairs)")
        self._require_int("n_values", 2, MAX_VOCAB)
        self._require_int("n_filler", 1, MAX_VOCAB)

    # token ranges: keys, then values, then filler
    @property
    def key0(self) -> int:
        return 1

    @property
    def value0(self) -> int:
        return 1 + self.n_keys

    @property
    def filler0(self) -> int:
        return 1 + self.n_keys + self.n_values

    @property
    def vocab(self) -> tuple[str, ...]:
        return (("<pad>",) + tuple(f"k{i}" for i in range(self.n_keys))
                + tuple(f"v{i}" for i in range(self.n_values))
                + tuple(f"f{i}" for i in range(self.n_filler)))

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=len(self.vocab),
            target_kind="classes", target_size=self.n_values,
            shape="many-to-many-synced", metric="accuracy", higher_is_better=True,
            chance=1.0 / self.n_values, perfect=1.0, slice_by=("lag",),
            vocab=self.vocab, classes=tuple(f"v{i}" for i in range(self.n_values)),
            description=f"{self.n_queries} queries over {self.n_pairs} key-value pairs "
                        "after a gap",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        P, Q = self.n_pairs, self.n_queries
        hi = self.lag if self.lag_max is None else self.lag_max
        T = 2 * P + hi + Q
        X = np.full((n, T), PAD, dtype=np.int64)  # (N, T)
        Y = np.zeros((n, T), dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        rows = []
        for i in range(n):
            keys = rng.choice(self.n_keys, size=P, replace=False)  # (P,)
            values = rng.integers(0, self.n_values, size=P)  # (P,)
            lag = self.lag if self.lag_max is None else int(rng.integers(self.lag, hi + 1))
            X[i, 0 : 2 * P : 2] = self.key0 + keys
            X[i, 1 : 2 * P : 2] = self.value0 + values
            X[i, 2 * P : 2 * P + lag] = self.filler0 + rng.integers(0, self.n_filler, size=lag)
            which = rng.choice(P, size=Q, replace=False)  # (Q,) indices of queried pairs
            q_pos = 2 * P + lag + np.arange(Q)
            X[i, q_pos] = self.key0 + keys[which]
            Y[i, q_pos] = values[which]
            mask[i, q_pos] = True
            q_lag = q_pos - 2 * which  # a query's step minus its key's step
            rows.append({"lag": lag, "query_lag_min": int(q_lag.min()),
                         "query_lag_max": int(q_lag.max())})
        return SeqData(X, Y, mask, pd.DataFrame(rows), input_size=len(self.vocab),
                       target_size=self.n_values)

    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        right = (pred == data.Y) | ~data.mask  # (N, T): true where scored and right, or unscored
        return {"sequence_accuracy": float(np.mean(np.all(right, axis=1)))}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """At a key seen before followed by a value, that value; value 0 elsewhere."""
        N, T = data.X.shape
        pred = np.zeros((N, T), dtype=np.int64)
        v0, f0 = self.value0, self.filler0
        for i in range(N):
            bound: dict[int, int] = {}
            x = data.X[i]
            for t in range(T):
                tok = int(x[t])
                if self.key0 <= tok < v0 and tok in bound:
                    pred[i, t] = bound[tok]
                if t > 0 and v0 <= tok < f0 and self.key0 <= int(x[t - 1]) < v0:
                    bound.setdefault(int(x[t - 1]), tok - v0)
        return pred, one_hot(pred, self.n_values)
