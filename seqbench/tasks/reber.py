"""Embedded Reber grammar: next-symbol prediction (synced many-to-many).

Sources: Reber (1967); the embedded form of Cleeremans, Servan-Schreiber &
McClelland (1989), "Finite state automata and simple recurrent networks"; the
scoring of Hochreiter & Schmidhuber (1997), "Long short-term memory", experiment 1.

Exact definition
----------------
The Reber grammar (each node's two exits with probability 1/2; node 0 emits B,
node 6 emits E and ends)::

    0 -B-> 1;  1 -T-> 2, 1 -P-> 3;  2 -S-> 2, 2 -X-> 4;  3 -T-> 3, 3 -V-> 5;
    4 -X-> 3, 4 -S-> 6;  5 -P-> 4, 5 -V-> 6;  6 -E-> end

An embedded string is ``B a R a E``: a is T or P with equal chance, R a Reber
string (``BTXSE``, ``BPVVE``, ``BTSSXXTVVE``, ...). The second symbol must be
remembered across R to predict the second-last one.

* Inputs: the string's symbols as tokens (0 is padding, then B T P S X V E as
  1..7); targets: the next symbol as a class (B T P S X V E as 0..6) at every step
  but the last (E), which is not scored; strings are right-padded to the longest
  of the sample (``lag_max + 4`` when ``lag_max`` is set).
* ``lag`` (default ``None``): the Reber grammar's own length distribution, as in
  the papers. With ``lag = n`` (n >= 5) the inner string R has exactly n symbols;
  with ``lag_max`` too its length is uniform in ``[lag, lag_max]``. The string is
  then drawn from the grammar conditioned on that length (exactly: each exit is
  taken with probability proportional to 1/2 times the probability of finishing
  in the remaining number of symbols from the node it leads to).
* A fixed ``lag`` leaves few distinct strings (the grammar's strings of one
  length): at ``lag = 10`` nearly every test string also occurs in training, so a
  fixed-lag score measures carrying the T/P across R, not generalising to unseen
  strings; ``lag_max`` (or the unconditioned grammar) mixes lengths.
* ``meta["lag"]`` is the length of R: the steps between reading the second
  symbol (step 1) and predicting it again (step ``len(R) + 1``). ``lag_bin``
  groups lags in doubling bins starting at 5 (5-9, 10-19, 20-39, ...).

Oracle and possible symbols. The task computes the exact distribution of the next
symbol given everything read so far (:meth:`next_distribution`): for the
unconditioned grammar, 1/2 for each exit of the current node (and the remembered
T/P after R); for a conditioned length, the posterior over the remaining length
given the prefix makes it depend on the step too. A symbol is *possible* where
that probability is positive; for the unconditioned grammar these are exactly the
grammar's successors, the sets the paper scores.

Scores: the primary metric is the cross-entropy of the actual next symbol (lower
is better). ``chance`` is the entropy of the marginal distribution of the targets
(the best constant prediction) and ``oracle`` the expected conditional entropy,
both as ratios of expectations per scored step (what pooling over many strings
converges to), computed exactly by dynamic programming over (node, step).
H&S's pass rule (a step is right when every possible next symbol gets a higher
probability than every impossible one) gives the extra metrics
``hs97_step_correct`` (fraction of scored steps) and ``hs97_string_correct``
(fraction of strings with every step right; the paper requires all test strings
right); both need ``predict_proba`` and are absent without it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from ..errors import SeqbenchError
from .base import Task

SYMBOLS = ("B", "T", "P", "S", "X", "V", "E")
CLS = {s: i for i, s in enumerate(SYMBOLS)}
PAD = 0
END = 7
# node -> ((symbol class, next node), ...); every exit has probability 1 / (number of exits)
GRAMMAR: dict[int, tuple[tuple[int, int], ...]] = {
    0: ((CLS["B"], 1),),
    1: ((CLS["T"], 2), (CLS["P"], 3)),
    2: ((CLS["S"], 2), (CLS["X"], 4)),
    3: ((CLS["T"], 3), (CLS["V"], 5)),
    4: ((CLS["X"], 3), (CLS["S"], 6)),
    5: ((CLS["P"], 4), (CLS["V"], 6)),
    6: ((CLS["E"], END),),
}
MIN_INNER = 5  # BTXSE, BPVVE
MAX_LAG = 500  # finishing probabilities stay far above float underflow (2^-500)
UNCONDITIONED_HORIZON = 2000  # DP horizon; the surviving mass there is below 1e-100


def _finish_probs(n_max: int) -> np.ndarray:
    """``g[q, k]``: probability that the grammar, having just entered node q, emits exactly
    k more symbols (its E included) before it ends; ``g[END, 0] = 1``."""
    g = np.zeros((END + 1, n_max + 1))
    g[END, 0] = 1.0
    for k in range(1, n_max + 1):
        for q, exits in GRAMMAR.items():
            g[q, k] = sum(g[q2, k - 1] for _, q2 in exits) / len(exits)  # g_q(k) = sum p g_q'(k-1)
    return g


class EmbeddedReber(Task):
    """Predict the next symbol of embedded Reber strings (H&S 1997 experiment 1).

    Parameters
    ----------
    lag : None (the grammar's own lengths) or the length of the inner string (>= 5).
    lag_max : with ``lag``, inner lengths are uniform in ``[lag, lag_max]``.

    Meta columns
    ------------
    One row per string (``B a R a E``, R the inner Reber string):

    lag : ``len(R)`` (int, at least 5), the steps between reading the second symbol a
        (step 1, 0-based) and predicting it again (step ``len(R) + 1``).
    lag_bin : ``lag`` in doubling bins from 5, as the bin's lower edge
        ``5 * 2**floor(log2(lag / 5))`` (int): 5 for lags 5-9, 10 for 10-19, 20 for
        20-39, ...; the column ``score`` slices by.
    string : the embedded string as letters, ``lag + 4`` of them (``"BPBPVVEPE"``, say).
    """

    name = "reber"
    version = 1

    def __init__(self, lag: int | None = None, lag_max: int | None = None) -> None:
        self.lag = lag
        self.lag_max = lag_max

    def check(self) -> None:
        self._require(
            self.lag is None or (isinstance(self.lag, int) and MIN_INNER <= self.lag <= MAX_LAG),
            "lag", f"None or an int in [{MIN_INNER}, {MAX_LAG}] (the inner string's length)",
        )
        self._require(
            self.lag_max is None or (
                self.lag is not None and isinstance(self.lag_max, int)
                and self.lag <= self.lag_max <= MAX_LAG
            ),
            "lag_max", f"None, or an int in [lag, {MAX_LAG}] when lag is set",
        )

    # -- the exact next-symbol distribution ------------------------------------------
    @property
    def _range(self) -> tuple[int, int] | None:
        if self.lag is None:
            return None
        return self.lag, self.lag if self.lag_max is None else self.lag_max

    def _tables(self):
        """``(g, h)``: finishing probabilities and, for a conditioned length, ``h[q, r] =
        sum_n w(n) / g[0, n] * g[q, n - r]`` (w uniform over the allowed lengths), the
        unnormalised weight of entering node q after r inner symbols."""
        key = (self.lag, self.lag_max)
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        rng_ = self._range
        if rng_ is None:
            tables = (None, None)
        else:
            lo, hi = rng_
            g = _finish_probs(hi)
            h = np.zeros((END + 1, hi + 1))
            for n in range(lo, hi + 1):
                c = 1.0 / g[0, n]  # w(n) / g_0(n), the common 1 / (hi - lo + 1) dropped
                h[:, : n + 1] += c * g[:, n::-1]  # h[q, r] += c * g[q, n - r], r = 0..n
            tables = (g, h)
        self._cache = (key, tables)
        return tables

    def _next_table(self) -> np.ndarray:
        """``P[m, q]``: the next-symbol distribution at inner node q after m inner symbols
        (``(M, 8, 7)``; one row, M = 1, serves every m for the unconditioned grammar).
        Rows of states that cannot occur are all zero."""
        key = (self.lag, self.lag_max)
        cached = getattr(self, "_next", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        _, h = self._tables()
        M = 1 if h is None else h.shape[1] - 1
        P = np.zeros((M, END + 1, len(SYMBOLS)))
        for q, exits in GRAMMAR.items():
            for s, q2 in exits:
                if h is None:
                    P[0, q, s] = 1.0 / len(exits)  # each exit with probability 1/2
                else:  # P(s | q, m) ~ 1/2 * h[q2, m + 1]
                    P[:, q, s] = h[q2, 1 : M + 1] / len(exits)
        total = P.sum(axis=-1, keepdims=True)
        P = np.divide(P, total, out=np.zeros_like(P), where=total > 0)
        self._next = (key, P)
        return P

    def inner_next(self, q: int, m: int) -> np.ndarray:
        """P(next symbol) over the 7 classes at inner node q after m inner symbols."""
        P = self._next_table()
        if len(P) == 1:
            p = P[0, q]
        else:
            p = P[m, q] if m < len(P) else np.zeros(len(SYMBOLS))
        if not p.any():
            raise SeqbenchError(f"task {self.name!r}: no continuation at node {q} after {m} "
                                "symbols; the string does not come from this task")
        return p

    def next_distribution(self, X: np.ndarray) -> np.ndarray:
        """``(N, T, 7)`` exact probabilities of the next symbol given the tokens read so
        far (zeros at padding and at the final E, which are not scored). Raises
        :class:`SeqbenchError` for a string this task cannot produce."""
        X = np.asarray(X)
        N, T = X.shape
        out = np.zeros((N, T, len(SYMBOLS)))
        half = np.zeros(len(SYMBOLS))
        half[[CLS["T"], CLS["P"]]] = 0.5
        for i in range(N):
            sym = [int(t) - 1 for t in X[i] if t != PAD]
            if len(sym) < 4 + MIN_INNER or sym[0] != CLS["B"] or sym[1] not in (CLS["T"],
                                                                                CLS["P"]):
                raise SeqbenchError(f"task {self.name!r}: row {i} is not an embedded Reber "
                                    "string")
            out[i, 0] = half  # after B: T or P
            out[i, 1, CLS["B"]] = 1.0  # after T/P: the inner B
            q, m = 0, 0
            for t in range(2, len(sym)):
                s = sym[t]
                if q == END:  # read the outer T/P: only E follows
                    if s != sym[1]:
                        raise SeqbenchError(f"task {self.name!r}: row {i} does not repeat "
                                            "its second symbol")
                    out[i, t, CLS["E"]] = 1.0
                    if t + 2 != len(sym) or sym[t + 1] != CLS["E"]:
                        raise SeqbenchError(f"task {self.name!r}: row {i} does not end in E")
                    break
                nxt = dict(GRAMMAR[q])
                if s not in nxt:
                    raise SeqbenchError(f"task {self.name!r}: row {i}: symbol "
                                        f"{SYMBOLS[s]} cannot follow node {q}")
                q, m = nxt[s], m + 1
                if q == END:
                    out[i, t, sym[1]] = 1.0  # after the inner E: the remembered T/P
                else:
                    out[i, t] = self.inner_next(q, m)
        return out

    # -- chance and oracle -------------------------------------------------------------
    def _expectations(self) -> tuple[np.ndarray, float, float]:
        """Expected target counts per class, expected scored steps and expected summed
        oracle entropy per embedded string, by forward DP over (node, inner step)."""
        horizon = UNCONDITIONED_HORIZON if self.lag is None else self._range[1]
        counts = np.zeros(len(SYMBOLS))
        counts[[CLS["T"], CLS["P"]]] += 1.0  # steps 0 and "inner E": T/P, 1/2 each, twice
        counts[CLS["B"]] += 1.0  # step 1
        counts[CLS["E"]] += 1.0  # the outer E
        steps = 4.0  # those four steps
        entropy = math.log(2.0)  # step 0 is a coin; the other three are determined
        alpha = {1: 1.0}  # node -> probability, after the inner B (m = 1)
        for m in range(1, horizon + 1):
            new: dict[int, float] = {}
            for q, a in alpha.items():
                p = self.inner_next(q, m)
                steps += a
                counts += a * p
                nz = p[p > 0]
                entropy -= a * float(np.sum(nz * np.log(nz)))
                for s, q2 in GRAMMAR[q]:
                    if q2 != END and p[s] > 0:
                        new[q2] = new.get(q2, 0.0) + a * p[s]
            alpha = new
            if not alpha or sum(alpha.values()) < 1e-100:
                break
        return counts, steps, entropy

    def chance_and_oracle(self) -> tuple[float, float]:
        """(chance, oracle) cross-entropy per scored step."""
        key = (self.lag, self.lag_max)
        cached = getattr(self, "_values", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        counts, steps, entropy = self._expectations()
        marginal = counts / steps
        nz = marginal[marginal > 0]
        values = (float(-np.sum(nz * np.log(nz))), entropy / steps)
        self._values = (key, values)
        return values

    def spec(self) -> TaskSpec:
        self.check()
        chance, oracle = self.chance_and_oracle()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=len(SYMBOLS) + 1,
            target_kind="classes", target_size=len(SYMBOLS),
            shape="many-to-many-synced", metric="cross_entropy", higher_is_better=False,
            chance=chance, oracle=oracle, slice_by=("lag_bin",),
            vocab=("<pad>", *SYMBOLS), classes=SYMBOLS,
            description="next symbol of embedded Reber strings (H&S 1997 exp. 1)",
        )

    # -- sampling ----------------------------------------------------------------------
    def _inner_string(self, rng: np.random.Generator) -> list[int]:
        out: list[int] = []
        q = 0
        if self.lag is None:
            while q != END:
                exits = GRAMMAR[q]
                s, q = exits[int(rng.integers(len(exits)))] if len(exits) > 1 else exits[0]
                out.append(s)
            return out
        lo, hi = self._range
        g, _ = self._tables()
        n = lo if lo == hi else int(rng.integers(lo, hi + 1))
        while q != END:
            left = n - len(out)  # symbols still to emit, this one included
            exits = GRAMMAR[q]
            k = 0
            if len(exits) == 2:  # exit j with probability proportional to g[q_j, left - 1]
                w0, w1 = g[exits[0][1], left - 1], g[exits[1][1], left - 1]
                k = int(rng.random() * (w0 + w1) >= w0)
            s, q = exits[k]
            out.append(s)
        return out

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        strings = []
        for _ in range(n):
            a = CLS["T"] if rng.integers(2) == 0 else CLS["P"]
            strings.append([CLS["B"], a, *self._inner_string(rng), a, CLS["E"]])
        T = max(len(s) for s in strings) if self.lag is None else self._range[1] + 4
        X = np.full((n, T), PAD, dtype=np.int64)  # (N, T)
        Y = np.zeros((n, T), dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        for i, s in enumerate(strings):
            L = len(s)
            X[i, :L] = np.asarray(s) + 1  # token = class + 1
            Y[i, : L - 1] = s[1:]  # the next symbol
            mask[i, : L - 1] = True
        lag = np.array([len(s) - 4 for s in strings])
        lag_bin = MIN_INNER * 2 ** np.floor(np.log2(lag / MIN_INNER)).astype(int)
        meta = pd.DataFrame({"lag": lag, "lag_bin": lag_bin,
                             "string": ["".join(SYMBOLS[c] for c in s) for s in strings]})
        return SeqData(X, Y, mask, meta, input_size=len(SYMBOLS) + 1, target_size=len(SYMBOLS))

    # -- scoring -----------------------------------------------------------------------
    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        if proba is None:
            return {}
        possible = self.next_distribution(data.X) > 0  # (N, T, 7)
        lo_possible = np.where(possible, proba, np.inf).min(axis=-1)  # (N, T)
        hi_impossible = np.where(possible, -np.inf, proba).max(axis=-1)
        ok = lo_possible > hi_impossible  # every possible above every impossible
        step_ok = ok[data.mask]
        string_ok = np.all(ok | ~data.mask, axis=1)
        return {"hs97_step_correct": float(np.mean(step_ok)),
                "hs97_string_correct": float(np.mean(string_ok))}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        proba = self.next_distribution(data.X)  # (N, T, 7)
        proba[~data.mask] = 1.0 / len(SYMBOLS)  # unscored steps: anything valid
        return proba.argmax(-1), proba
