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
    ("hmm", {"tol": float("inf")}, "'tol': expected a float >= 0"),
    ("lds", {"tol": float("nan")}, "'tol': expected a finite number >= 0"),
    ("local-level", {"max_iter": 0}, "'max_iter': expected an int >= 1, got 0"),
    ("local-level", {"diffuse": np.float64("nan")}, "'diffuse': expected a number in"),
    ("irnn", {"input_std": -1.0}, "'input_std': expected a float >= 0, got -1.0"),
])
def test_out_of_range_model_values_are_refused_when_built(name, params, message):
    with pytest.raises(SeqbenchError, match=message):
        sb.make_model(name, **params)


def test_out_of_range_task_values_are_refused_when_built():
    with pytest.raises(SeqbenchError, match=r"task 'jane-recall', parameter 'lag': expected an "
                                            r"int >= 0 and <= 10\*\*6, got -5"):
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


# -- task parameters: every one bounded at make_task, not deep inside sampling ----------------
def _builtin(registry) -> list[str]:
    """The names of seqbench's own entries (not an installed plugin's)."""
    return [n for n in registry.names() if registry.get(n).__module__.startswith("seqbench.")]


def _numeric_params():
    """(task, parameter, bad value) for every numeric parameter of every registered task:
    an int far beyond any bound for int (and None-default int) parameters, and NaN,
    infinities and 1e300 for float ones. Seeds are any int >= 0 and are left out."""
    import inspect

    from seqbench.registry import param_defaults

    out = []
    for name in _builtin(sb.task_registry):
        for param, default in param_defaults(sb.task_registry.get(name)).items():
            if "seed" in param:
                continue
            if default is None or (isinstance(default, int) and not isinstance(default, bool)):
                out.append((name, param, 10**12))
            elif isinstance(default, float):
                out += [(name, param, v) for v in (float("inf"), -float("inf"),
                                                   float("nan"), 1e300)]
            else:
                assert isinstance(default, bool | str | tuple) or default is inspect.Parameter.empty
    return out


@pytest.mark.parametrize("name, param, value", _numeric_params())
def test_every_task_refuses_huge_or_non_finite_numbers_when_built(name, param, value):
    with pytest.raises(SeqbenchError) as err:
        sb.make_task(name, **{param: value})
    message = str(err.value)
    assert "\n" not in message and f"task {name!r}, parameter {param!r}: expected" in message


def test_the_numeric_parameters_cover_the_tasks_named_in_the_audit():
    seen = {(n, p) for n, p, _ in _numeric_params()}
    assert {("latch", "noise_var"), ("ar-process", "noise_std"), ("cv-track", "dt"),
            ("cv-track", "init_vel_std"), ("jane-recall", "lag"),
            ("single-step", "n_tokens")} <= seen


@pytest.mark.parametrize("name, params, bad", [
    ("jane-recall", {"lag": 10**6}, "lag"),
    ("jane-recall", {"lag": 10, "lag_max": 10**6}, "lag_max"),
    ("single-step", {"n_tokens": 10**6}, "n_tokens"),
    ("adding", {"length": 10**6}, "length"),
    ("copy-memory", {"blanks": 10**6, "n_symbols": 10**6, "n_copy": 10**6}, "blanks"),
    ("associative-recall", {"n_keys": 10**6, "n_values": 10**6, "n_filler": 10**6},
     "n_values"),
    ("latch", {"noise_var": 1e6}, "noise_var"),
    ("cv-track", {"dt": 1e6, "meas_std": 1e-6}, "dt"),
    ("ar-process", {"noise_std": 1e6}, "noise_std"),
])
def test_task_bounds_are_inclusive_and_one_past_them_is_refused(name, params, bad):
    sb.make_task(name, **params)  # at the bounds: accepted
    over = dict(params)
    over[bad] = params[bad] + 1 if isinstance(params[bad], int) else params[bad] * 1.5
    if bad == "lag_max":
        over[bad] = 10**6 + 1
    with pytest.raises(SeqbenchError, match=rf"parameter '{bad}': expected .*<= (10\*\*6|1e6)"):
        sb.make_task(name, **over)


# -- models: fitted state, shapes, validation splits ------------------------------------------
def _token_data(x_max=3, y_max=2, n=12, T=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, x_max + 1, (n, T))
    Y = rng.integers(0, y_max + 1, (n, T))
    X[0, 0], Y[0, -1] = x_max, y_max  # the largest ids are present: the inferred sizes
    mask = np.zeros((n, T), bool)
    mask[:, -1] = True
    return SeqData(X, Y, mask)


@pytest.mark.parametrize("name", _builtin(sb.model_registry))
def test_unfitted_models_say_so_in_one_line(name):
    model = sb.make_model(name)
    data = _token_data()
    expected = f"^{type(model).__name__} is not fitted yet: call fit first$"
    with pytest.raises(SeqbenchError, match=expected):
        model.n_parameters()
    with pytest.raises(SeqbenchError, match=expected):
        model.diagnostics(data)
    if hasattr(type(model), "variances_"):  # the structural models' fitted variances
        with pytest.raises(SeqbenchError, match=expected):
            _ = model.variances_


def test_a_failed_fit_leaves_an_unfitted_model():
    from seqbench.models.autoregressive import AutoRegressive

    model = AutoRegressive(p=0)  # refused by _check_params inside _fit
    with pytest.raises(SeqbenchError, match="'p'"):
        model.fit(_token_data())
    with pytest.raises(SeqbenchError, match="AutoRegressive is not fitted yet"):
        model.n_parameters()
    with pytest.raises(SeqbenchError, match="AutoRegressive is not fitted yet"):
        model.predict(_token_data().X)


def test_fitted_models_report_and_diagnostics_check_their_data():
    from seqbench.models.autoregressive import AutoRegressive

    model = AutoRegressive(p=2).fit(_token_data())
    assert model.n_parameters() == 3 * (2 * 4) + 3 and model.diagnostics(_token_data()) == {}
    with pytest.raises(SeqbenchError, match="diagnostics: expected SeqData, got ndarray"):
        model.diagnostics(_token_data().X)
    with pytest.raises(SeqbenchError, match=r"X: expected token ids in \[0, 4\) as in fit"):
        model.diagnostics(_token_data(x_max=6))


def test_a_plugin_that_overrides_n_parameters_itself_keeps_working():
    from seqbench.models.base import SeqModel

    class Lookup(SeqModel):  # as README's plugin (and tests/plugin_example) writes it
        _tags = {"input_kinds": ("tokens",), "target_kinds": ("classes",)}

        def _fit(self, data, valid):
            self.table_ = np.ones((data.input_size, data.target_size)) / data.target_size

        def _predict_proba(self, X):
            return self.table_[X]

        def n_parameters(self):
            return int(self.table_.size)

    model = Lookup().fit(_token_data())
    assert model.n_parameters() == 12 and model.diagnostics(_token_data()) == {}


@pytest.mark.parametrize("shape", ["foo", 3, "many_to_one"])
def test_fit_names_an_unknown_shape_and_the_accepted_ones(shape):
    from seqbench.errors import IncompatibleError
    from seqbench.models.autoregressive import AutoRegressive

    with pytest.raises(SeqbenchError) as err:
        AutoRegressive().fit(_token_data(), shape=shape)
    assert not isinstance(err.value, IncompatibleError)  # a mistake, not a skipped pair
    assert str(err.value) == ("shape: expected None or one of many-to-one, many-to-many-synced, "
                              "many-to-many-delayed, one-to-many, one-to-one, "
                              f"got {shape!r}")


class _Recorder:
    """A model that records the sizes of the validation split its _fit receives."""

    @staticmethod
    def make():
        from seqbench.models.baseline import ChanceBaseline

        class Recorder(ChanceBaseline):
            def _fit(self, data, valid):
                super()._fit(data, valid)
                self.valid_sizes_ = None if valid is None else (valid.input_size,
                                                                valid.target_size)

        return Recorder()


def test_a_valid_split_lacking_the_largest_ids_is_accepted_with_the_train_sizes():
    train = _token_data(x_max=3, y_max=2)
    valid = _token_data(x_max=1, y_max=0, seed=1)  # inferred sizes 2 and 1
    assert (valid.input_size, valid.target_size) == (2, 1)
    model = _Recorder.make().fit(train, valid)
    assert model.valid_sizes_ == (4, 3)  # _fit sees the train sizes, as documented
    assert model.predict(valid.X).shape == valid.X.shape  # predict took it already


@pytest.mark.parametrize("valid, message", [
    (lambda: _token_data(x_max=4, y_max=2, seed=1),
     r"^valid\.X: expected token ids below 4 \(train's input_size; .*\), got 4$"),
    (lambda: _token_data(x_max=3, y_max=5, seed=1),
     r"^valid\.Y: expected class ids below 3 \(train's target_size; .*\), got 5$"),
    (lambda: SeqData(np.zeros((2, 5, 1)), np.zeros((2, 5), np.int64), np.ones((2, 5), bool)),
     r"^valid\.input_kind: expected 'tokens' as in train, got 'real'$"),
])
def test_a_valid_split_beyond_the_train_sizes_is_refused(valid, message):
    with pytest.raises(SeqbenchError, match=message):
        _Recorder.make().fit(_token_data(x_max=3, y_max=2), valid())


def test_real_valid_dimensions_must_match_exactly():
    def real(D, K):
        return SeqData(np.zeros((3, 4, D)), np.zeros((3, 4, K)), np.ones((3, 4), bool))

    _Recorder.make().fit(real(2, 1), real(2, 1))
    with pytest.raises(SeqbenchError, match=r"^valid\.input_size: expected D = 2 as in train, "
                                            r"got 3$"):
        _Recorder.make().fit(real(2, 1), real(3, 1))
    with pytest.raises(SeqbenchError, match=r"^valid\.target_size: expected K = 1 as in train, "
                                            r"got 2$"):
        _Recorder.make().fit(real(2, 1), real(2, 2))


def test_a_split_passed_where_its_inputs_belong_is_named():
    from seqbench.models.autoregressive import AutoRegressive

    data = _token_data()
    model = AutoRegressive(p=2).fit(data)
    for method in (model.predict, model.predict_proba):
        with pytest.raises(SeqbenchError, match=r"^X: expected an array of inputs, got "
                           r"SeqData \(pass its inputs: data\.X\)$"):
            method(data)
