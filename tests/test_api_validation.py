"""The Python API's validation: factories check what a suite file's loader checks, and the
public registries stay reachable whatever has been imported."""

import numpy as np
import pytest

import seqbench as sb
from seqbench.data import SeqData
from seqbench.errors import SeqbenchError


def test_the_registries_survive_importing_the_subpackages():
    import seqbench.models.base  # noqa: F401  (what a plugin imports first)
    import seqbench.tasks.jane  # noqa: F401

    assert "lstm" in sb.model_registry.names() and "jane-recall" in sb.task_registry.names()
    sb.make_task("jane-recall")
    assert sb.task_registry.get("jane-recall").__name__ == "JaneRecall"


def test_numpy_scalars_are_taken_as_python_numbers():
    model = sb.make_model("lstm", hidden_size=np.int64(8), lr=np.float32(0.5))
    assert type(model.hidden_size) is int and model.hidden_size == 8
    assert type(model.lr) is float and model.lr == 0.5
    assert sb.make_task("jane-recall", lag=np.arange(3)[2]).lag == 2


def test_none_where_the_signature_allows_it():
    assert sb.make_model("lstm", clip_norm=None).clip_norm is None
    with pytest.raises(SeqbenchError, match="'hidden_size': expected int like the default"):
        sb.make_model("lstm", hidden_size=None)


@pytest.mark.parametrize("name", ["ar", "mlp", "lds", "hmm", "rnn", "irnn", "lstm", "gru"])
@pytest.mark.parametrize("seed", [-1, 2**32, True])
def test_every_seeded_model_refuses_a_bad_random_state_when_built(name, seed):
    with pytest.raises(SeqbenchError, match=r"parameter 'random_state': expected None or an "
                                            r"int in \[0, 2\*\*32\)"):
        sb.make_model(name, random_state=seed)


@pytest.mark.parametrize("name, params, message", [
    ("gru", {"device": "tpu"}, "'device': expected 'auto', 'cpu' or 'cuda"),
    ("lstm", {"device": "cuda:x"}, "'device': expected 'auto', 'cpu' or 'cuda"),
    ("mlp", {"lr": float("inf")}, "'lr': expected a finite float > 0"),
    ("ar", {"alpha": float("inf")}, "'alpha': expected a finite float >= 0"),
])
def test_out_of_range_model_values_are_refused_when_built(name, params, message):
    with pytest.raises(SeqbenchError, match=message):
        sb.make_model(name, **params)


def test_out_of_range_task_values_are_refused_when_built():
    with pytest.raises(SeqbenchError, match="task 'jane-recall', parameter 'lag': expected an "
                                            "int >= 0, got -5"):
        sb.make_task("jane-recall", lag=-5)


@pytest.mark.parametrize("task", ["jane-recall", "digits", "nile"])
@pytest.mark.parametrize("seed", [1.5, -1, "a", True])
def test_splits_refuse_a_seed_that_is_not_a_non_negative_int(task, seed):
    with pytest.raises(SeqbenchError, match=f"task '{task}': expected a seed that is an int "
                                            ">= 0"):
        sb.make_task(task).splits(seed)


@pytest.mark.parametrize("make, message", [
    (lambda X, Y, M: SeqData(X[..., :0], Y, M), "X: expected at least one input feature"),
    (lambda X, Y, M: SeqData(X, Y[..., :0], M), "Y: expected at least one target column"),
    (lambda X, Y, M: SeqData(X, Y, M, input_size=7.5), "input_size: expected None or an int"),
    (lambda X, Y, M: SeqData(X[..., 0].astype(int), Y[..., 0].astype(int), M,
                             target_size="3"), "target_size: expected None or an int >= 1"),
    (lambda X, Y, M: SeqData(X[..., 0].astype(int), Y[..., 0].astype(int), M,
                             input_size=0), "input_size: expected None or an int >= 1"),
])
def test_seqdata_refuses_empty_feature_axes_and_odd_sizes(make, message):
    X, Y, M = np.zeros((3, 4, 2)), np.zeros((3, 4, 1)), np.ones((3, 4), bool)
    with pytest.raises(SeqbenchError, match=message):
        make(X, Y, M)


# -- predictions a task refuses to score ------------------------------------------------------
def _scored(task, data, pred, proba=None):
    return task.score(data, pred, proba)


def test_non_finite_or_impossible_predictions_are_not_scored():
    from seqbench.errors import DivergedError

    task = sb.make_task("jane-recall", lag=2, n_names=4)
    _, _, test = task.splits(0, 10, 0, 20)
    K = test.target_size
    pred = np.zeros_like(test.Y)
    proba = np.full((*test.Y.shape, K), 1.0 / K)
    assert _scored(task, test, pred, proba)["metrics"]["accuracy"] >= 0  # the good case
    bad = proba.copy()
    bad[test.mask] = np.nan
    with pytest.raises(DivergedError, match="predict_proba: NaN or infinity at 20 of 20"):
        _scored(task, test, pred, bad)
    with pytest.raises(SeqbenchError, match=r"expected probabilities \(>= 0, each row"):
        _scored(task, test, pred, proba * 2)
    with pytest.raises(SeqbenchError, match=rf"expected class ids in \[0, {K}\)"):
        _scored(task, test, pred + K, proba)
    with pytest.raises(DivergedError, match="predictions: NaN or infinity"):
        _scored(task, test, np.where(test.mask, np.nan, 0.0), proba)
    # real targets
    adding = sb.make_task("adding", length=10)
    _, _, te = adding.splits(0, 10, 0, 8)
    with pytest.raises(DivergedError, match="predictions: NaN or infinity at 8 of 8"):
        _scored(adding, te, np.full(te.Y.shape, np.inf))


def test_a_model_predicting_nan_is_recorded_as_diverged_not_ok(tmp_path):
    from seqbench import registry
    from seqbench.models.baseline import ChanceBaseline
    from seqbench.runner import run_suite
    from seqbench.store import Store
    from seqbench.suite import parse_suite

    class NaNChance(ChanceBaseline):
        def _predict_proba(self, X):
            return np.full((*X.shape[:2], self.target_size_), np.nan)

    registry.models.register("nan-chance", NaNChance)
    try:
        suite = parse_suite('[suite]\nname = "n"\n[data]\nn_train = 20\nn_valid = 5\n'
                            'n_test = 10\n[[task]]\nname = "jane-recall"\nlag = 2\n'
                            '[[model]]\nname = "nan-chance"\n[[model]]\nname = "chance"\n',
                            "n.toml")
        with Store(tmp_path / "s.sqlite") as store:
            run_suite(suite, store, log=None)
            got = dict(store.conn.execute("SELECT model, status FROM runs"))
    finally:
        registry.models._extra.pop("nan-chance")
    assert got == {"nan-chance": "diverged", "chance": "ok"}


@pytest.mark.parametrize("seed", [None, -1, 1.5, True])
def test_sample_refuses_a_seed_that_would_not_repeat_or_is_not_a_seed(seed):
    with pytest.raises(SeqbenchError, match="task 'adding': expected a seed that is an int >= 0"):
        sb.make_task("adding").sample(3, seed)


def test_sample_takes_a_seed_sequence_and_repeats_it():
    task = sb.make_task("adding")
    a = task.sample(3, np.random.SeedSequence([4, 1]))
    b = task.sample(3, np.random.SeedSequence([4, 1]))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.Y, b.Y)
    with pytest.raises(SeqbenchError, match="expected a positive sample size, got True"):
        task.sample(True, 0)
