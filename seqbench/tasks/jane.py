"""Jane recall: the lecture's long-range example as a task with the gap as a knob.

Each example is a token sequence such as::

    Jane walked into the room . John walked in too . <filler> Jane said hi to

and the answer, scored at the last step only (many-to-one), is the person the
query subject greets: the *other* of the two people who walked in ("John").
With ``n_people > 2`` more people walk in (``Mary walked in too .``) and the
subject greets the person who walked in right after them (the last to enter
greets the first).

Exact definition
----------------
* ``n_people`` (default 2) different names P1, ..., Pn are drawn uniformly from
  the first ``n_names`` names of :data:`NAMES`, in random order (A = P1, B = P2).
* Introductions: ``P1 walked into the room .`` then, for each later person,
  ``Pk walked in too .`` (5 tokens each), in order of entry.
* ``lag`` filler tokens follow the last introduction (or, with ``lag_max``, a lag
  drawn uniformly in ``[lag, lag_max]`` per example; shorter examples are
  right-padded with ``<pad>`` and never scored there). Filler is made of sentences
  of 3 to 7 words drawn uniformly from the first ``n_filler`` words of
  :data:`FILLER`, each closed by ``.``; the last sentence is cut so that exactly
  ``lag`` tokens stand between the last introduction and the query.
* ``distractors`` of those filler sentences (at most one per sentence) are replaced
  by ``C smiled .`` / ``C waved .`` / ``C left .`` sentences about other names C
  (none of the people who walked in), so that names other than the answer appear
  inside the gap.
* Query: ``S said hi to`` where S is P1 (``query="first"``) or, with
  ``query="either"``, any of the n people with equal chance. The answer is the
  person who walked in right after S, cyclically: P(k+1) for S = Pk, and P1 for
  S = Pn. With two people this is "the other one"; with more it is still unique
  and derivable from the text (the order of the introductions).

The target vocabulary is the ``n_names`` names, so an input-blind predictor scores
``1 / n_names`` accuracy (the answer is uniform over names) and cross-entropy
``log(n_names)``. ``meta`` records each example's ``lag``, ``distractors`` and the
names (``first``, ``second``, ``subject``, ``answer``; with ``n_people > 2`` also
``people``, every name in order of entry, space-separated).

Version 1 data is unchanged by ``n_people``: with ``n_people=2`` a seed produces
the same bytes (arrays and meta) as before the parameter existed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, Task, is_int

NAMES = (
    "Jane John Mary Paul Anna Mark Lucy Tom Emma Jack Sara Luke Nina Carl Eva Ivan "
    "Rosa Hugo Lena Omar Zoe Adam Iris Noah Maya Leo Ruth Sam Alba Otto Vera Igor"
).split()
FILLER = (
    "it was late in day sun rain sky dark cold warm quiet loud house garden kitchen "
    "table chair window door light music food bread coffee tea cup book letter phone "
    "clock street car train city town river tree flower bird dog cat small big old new "
    "red green blue slowly quickly very then later soon always never"
).split()
FIXED = "<pad> . walked into the room in too said hi to smiled waved left".split()
PAD = 0


class JaneRecall(Task):
    """Recall who else walked in, across ``lag`` filler tokens (many-to-one).

    Parameters
    ----------
    lag : tokens between the end of the last introduction and the query (0 to 10**6).
    lag_max : if set, each example's lag is uniform in ``[lag, lag_max]`` (at most 10**6).
    n_names : size of the name vocabulary (2 to 32); chance accuracy is ``1/n_names``.
    n_filler : size of the filler vocabulary (1 to 56).
    distractors : filler sentences replaced by sentences about other names.
    query : ``"first"`` (the first person is asked about) or ``"either"`` (any of
        the people who walked in).
    n_people : how many people walk in (2 to ``n_names``); the subject greets the
        one who walked in right after them (the last greets the first).

    Meta columns
    ------------
    One row per example:

    lag : the filler tokens between the last introduction and the query in that
        example (int): ``lag``, or its own draw from ``[lag, lag_max]``; the column
        ``score`` slices by.
    distractors : the distractor sentences placed in that example's gap (int).
    first, second : the names of the first and second person to walk in (P1, P2).
    subject : the name S asked about in the query ``S said hi to`` (always ``first``
        with ``query="first"``).
    answer : the target, the name of the person who walked in right after S
        (cyclically: ``second`` when S is P1, P1 when S is the last to walk in).
    people : only with ``n_people > 2``: every name in order of entry, space-separated.
    """

    name = "jane-recall"
    version = 1

    def __init__(
        self,
        lag: int = 10,
        lag_max: int | None = None,
        n_names: int = 10,
        n_filler: int = 20,
        distractors: int = 0,
        query: str = "first",
        n_people: int = 2,
    ) -> None:
        self.lag = lag
        self.lag_max = lag_max
        self.n_names = n_names
        self.n_filler = n_filler
        self.distractors = distractors
        self.query = query
        self.n_people = n_people

    def check(self) -> None:
        self._require_int("lag", 0, MAX_LENGTH)
        self._require(
            self.lag_max is None or (is_int(self.lag_max)
                                     and self.lag <= self.lag_max <= MAX_LENGTH),
            "lag_max", "None or an int >= lag and <= 10**6",
        )
        self._require(is_int(self.n_names) and 2 <= self.n_names <= len(NAMES),
                      "n_names", f"an int in [2, {len(NAMES)}]")
        self._require(is_int(self.n_filler) and 1 <= self.n_filler <= len(FILLER),
                      "n_filler", f"an int in [1, {len(FILLER)}]")
        self._require(self.query in ("first", "either"), "query", "'first' or 'either'")
        self._require(is_int(self.distractors) and self.distractors >= 0,
                      "distractors", "an int >= 0")
        self._require(is_int(self.n_people) and 2 <= self.n_people <= self.n_names,
                      "n_people", f"an int in [2, n_names = {self.n_names}]")
        self._require(self.distractors == 0 or self.n_names > self.n_people, "distractors",
                      f"0 when n_names <= n_people = {self.n_people} "
                      "(distractors need a name that did not walk in)")
        # filler sentences are 3 to 7 tokens, so a gap of `lag` holds at least lag // 7 - 1
        # whole sentences for distractors to replace
        self._require(self.distractors <= max(self.lag // 7 - 1, 0), "distractors",
                      f"at most lag // 7 - 1 = {max(self.lag // 7 - 1, 0)} for lag {self.lag}")

    @property
    def vocab(self) -> tuple[str, ...]:
        return tuple(FIXED) + tuple(NAMES[: self.n_names]) + tuple(FILLER[: self.n_filler])

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=len(self.vocab),
            target_kind="classes", target_size=self.n_names,
            shape="many-to-one", metric="accuracy", higher_is_better=True,
            chance=1.0 / self.n_names, perfect=1.0,
            slice_by=("lag",), vocab=self.vocab, classes=tuple(NAMES[: self.n_names]),
            description="who else walked into the room, across a gap of `lag` tokens",
        )

    def _filler(
        self, lag: int, n_distractors: int, others: list[int], tok: dict[str, int], rng
    ) -> tuple[list[int], int]:
        """Exactly ``lag`` tokens of filler sentences, up to ``n_distractors`` of them about
        other names; returns the tokens and the number of distractor sentences placed.
        ``tok`` maps words to token ids."""
        filler_ids = [tok[w] for w in FILLER[: self.n_filler]]
        templates = [["smiled", "."], ["waved", "."], ["left", "."]]
        sentences: list[list[int]] = []
        placed = 0
        total = 0
        while total < lag:
            k = int(rng.integers(3, 8))
            words = [filler_ids[int(i)] for i in rng.integers(0, len(filler_ids), size=k - 1)]
            sentences.append(words + [tok["."]])
            total += k
        if n_distractors:
            # a distractor sentence (3 tokens) replaces the tail of a chosen filler sentence
            # (>= 3 tokens) that lies wholly inside the gap, so the gap length stays put
            ends = np.cumsum([len(s) for s in sentences])
            whole = np.flatnonzero(ends <= lag)
            chosen = rng.choice(whole, size=min(n_distractors, len(whole)), replace=False)
            for s in chosen:
                t = templates[int(rng.integers(len(templates)))]
                name = others[int(rng.integers(len(others)))]
                d = [name] + [tok[w] for w in t]
                sentences[s] = sentences[s][: len(sentences[s]) - len(d)] + d
            placed = len(chosen)
        flat = [t for s in sentences for t in s]
        return flat[:lag], placed

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        tok = {w: i for i, w in enumerate(self.vocab)}
        name0 = len(FIXED)
        k = self.n_people
        hi = self.lag if self.lag_max is None else self.lag_max
        T = 11 + 5 * (k - 2) + hi + 4
        X = np.full((n, T), PAD, dtype=np.int64)
        Y = np.zeros((n, T), dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        rows = []
        for i in range(n):
            people = [int(v) for v in rng.choice(self.n_names, size=k, replace=False)]
            lag = self.lag if self.lag_max is None else int(
                rng.integers(self.lag, self.lag_max + 1))
            others = [name0 + j for j in range(self.n_names) if j not in people]
            filler, n_d = self._filler(lag, self.distractors, others, tok, rng)
            if self.query == "first":
                s_idx = 0
            else:
                # k - 1 - r rather than r keeps the random stream (and so the data) of
                # n_people=2 identical to version 1, where r = 1 meant "ask about A"
                s_idx = k - 1 - int(rng.integers(k))
            subj, ans = people[s_idx], people[(s_idx + 1) % k]  # the next to enter, cyclically
            intros = [name0 + people[0], tok["walked"], tok["into"], tok["the"], tok["room"],
                      tok["."]]
            for p in people[1:]:
                intros += [name0 + p, tok["walked"], tok["in"], tok["too"], tok["."]]
            seq = intros + filler + [name0 + subj, tok["said"], tok["hi"], tok["to"]]
            X[i, : len(seq)] = seq
            Y[i, len(seq) - 1] = ans
            mask[i, len(seq) - 1] = True
            row = {"lag": lag, "distractors": n_d, "first": NAMES[people[0]],
                   "second": NAMES[people[1]], "subject": NAMES[subj], "answer": NAMES[ans]}
            if k > 2:
                row["people"] = " ".join(NAMES[p] for p in people)
            rows.append(row)
        return SeqData(X, Y, mask, pd.DataFrame(rows), input_size=len(self.vocab),
                       target_size=self.n_names)

    def decode(self, x: np.ndarray) -> str:
        """The text of one token sequence (padding dropped)."""
        v = self.vocab
        return " ".join(v[int(t)] for t in x if t != PAD)
