"""Jane recall: the label is the name the text implies, the lag is what meta says."""

import numpy as np
import pytest

import seqbench as sb
from seqbench.errors import SeqbenchError
from seqbench.models.baseline import ChanceBaseline
from seqbench.tasks.jane import NAMES


def solve(text: str) -> str:
    """Read the story and answer the query, independently of the generator."""
    words = text.split()
    first = words[words.index("walked") - 1]                  # "A walked into the room"
    second = words[words.index("too") - 3]                   # "B walked in too"
    subject = words[-4]                                       # "S said hi to"
    assert words[-3:] == ["said", "hi", "to"]
    return second if subject == first else first


@pytest.mark.parametrize("params", [
    {"lag": 0}, {"lag": 7, "n_names": 3}, {"lag": 30, "distractors": 3},
    {"lag": 5, "lag_max": 25, "query": "either"},
])
def test_every_label_is_the_name_the_text_implies(params, seed):
    task = sb.make_task("jane-recall", **params)
    data = task.sample(200, seed)
    names = task.spec().classes
    for i in range(data.n):
        text = task.decode(data.X[i])
        (t,) = np.flatnonzero(data.mask[i])
        assert names[data.Y[i, t]] == solve(text)
        # meta's lag is the number of tokens between "too ." and the query
        words = text.split()
        gap = len(words) - (words.index("too") + 2) - 4
        assert gap == data.meta.loc[i, "lag"]
        assert t == len(words) - 1                      # scored at the last real token


def test_distractors_name_only_other_people(seed):
    task = sb.make_task("jane-recall", lag=40, distractors=4, n_names=6)
    data = task.sample(100, seed)
    for i in range(data.n):
        row = data.meta.loc[i]
        words = task.decode(data.X[i]).split()
        mentioned = [w for w in words[11:-4] if w in NAMES]
        assert len(mentioned) == row["distractors"] > 0
        assert row["first"] not in mentioned and row["second"] not in mentioned


def test_same_seed_same_bytes_and_splits_differ():
    task = sb.make_task("jane-recall", lag=6)
    a, b = task.sample(50, 3), task.sample(50, 3)
    assert a.fingerprint() == b.fingerprint()
    assert task.sample(50, 4).fingerprint() != a.fingerprint()
    train, valid, test = task.splits(seed=0, n_train=50, n_valid=50, n_test=50)
    assert len({train.fingerprint(), valid.fingerprint(), test.fingerprint()}) == 3


def test_chance_is_one_over_names_empirically():
    task = sb.make_task("jane-recall", lag=3, n_names=5)
    train, _, test = task.splits(seed=0, n_train=2000, n_valid=1, n_test=4000)
    model = ChanceBaseline(strategy="uniform").fit(train)
    result = sb.evaluate(model, task, test)
    assert result["chance"] == pytest.approx(0.2)
    # the blind predictor's accuracy is binomial around 1/5: 4000 draws, 5 sd is about 0.032
    assert abs(result["score"] - 0.2) < 0.032
    assert result["metrics"]["cross_entropy"] == pytest.approx(np.log(5))


@pytest.mark.parametrize("params, message", [
    ({"lag": -1}, "parameter 'lag': expected an int >= 0"),
    ({"n_names": 1}, "parameter 'n_names': expected an int in"),
    ({"query": "last"}, "parameter 'query': expected 'first' or 'either'"),
    ({"lag": 10, "distractors": 5}, "parameter 'distractors': expected at most"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(SeqbenchError, match=message):
        sb.make_task("jane-recall", **params).sample(2, 0)
