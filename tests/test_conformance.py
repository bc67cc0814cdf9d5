"""Every built-in model passes the conformance suite that plugins run too, and the suite
catches models that cheat or would break in real use (the models below, each broken in
one way)."""

import numpy as np
import pytest

import seqbench as sb
from seqbench import registry
from seqbench.errors import SeqbenchError
from seqbench.models.base import SeqModel, seed_of
from seqbench.testing import (
    check_causal,
    check_fit_predict_shapes,
    check_model,
    parametrize_with_checks,
)


def builtin_models():
    eps = registry.models._entry_points()
    return [registry.models.get(name)() for name in sorted(eps)
            if eps[name].value.startswith("seqbench.")]


@parametrize_with_checks(builtin_models())
def test_builtin_model_conformance(model, check):
    check(model)


# -- broken models: each passes every other check and fails one ------------------------
class RealModel(SeqModel):
    """Real inputs to real targets; subclasses say what they predict from X."""

    _tags = {"input_kinds": ("real",), "target_kinds": ("real",)}

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def _fit(self, data, valid):
        self.k_ = data.target_size

    def _predict(self, X):
        return np.repeat(self.scale * self._signal(X), self.k_, axis=-1)  # (N, T, K)


class ReadsNextInput(RealModel):
    """Predicts Y[t] from X[t+1] (the last step repeats its own input): perfect on
    forecasting data, where Y[t] = X[t+1]."""

    def _signal(self, X):
        return np.concatenate([X[:, 1:, :1], X[:, -1:, :1]], axis=1)


class DividesByLength(RealModel):
    """Reads no later input, but its output at t depends on the row's length T."""

    def _signal(self, X):
        return X[..., :1] / X.shape[1]


class StandardisesWithBatch(RealModel):
    """Standardises each step with the mean and deviation over the rows of the batch it
    is asked to predict (causal in time, but a row's output depends on the others)."""

    def _signal(self, X):
        x = X[..., :1]
        return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)


class RowCountFromFit(RealModel):
    """Remembers how many rows it was fitted on and predicts that many."""

    def _fit(self, data, valid):
        self.k_, self.n_ = data.target_size, data.n

    def _predict(self, X):
        return np.zeros((self.n_, X.shape[1], self.k_))


class TokenModel(SeqModel):
    """Token inputs to class targets, probabilities from ``_proba``."""

    _tags = {"input_kinds": ("tokens",), "target_kinds": ("classes",)}

    def __init__(self, smoothing: float = 1.0) -> None:
        self.smoothing = smoothing

    def _fit(self, data, valid):
        self.k_ = data.target_size

    def _predict_proba(self, X):
        return self._proba(X)


class LastTokenEverywhere(TokenModel):
    """Every step leans towards the class of the row's last token."""

    def _proba(self, X):
        p = np.full((*X.shape, self.k_), self.smoothing)
        p[np.arange(len(X)), :, X[:, -1] % self.k_] += 1.0
        return p / p.sum(axis=-1, keepdims=True)


class NegativeProbabilities(TokenModel):
    """Rows that sum to 1 with a negative entry."""

    def _proba(self, X):
        p = np.full((*X.shape, self.k_), 1.0 / self.k_)
        p[..., 0] += 0.5
        p[..., 1] -= 0.5
        return p


class HalfClassIds(SeqModel):
    """Class 'ids' of 0.5 (no predict_proba)."""

    _tags = {"input_kinds": ("tokens",), "target_kinds": ("classes",), "predict_proba": False}

    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def _fit(self, data, valid):
        pass

    def _predict(self, X):
        return np.full(X.shape, self.value)


class TorchInit(RealModel):
    """A linear map from torch-initialised weights, seeded by ``random_state`` (or, with
    ``ignore_seed``, always by 0)."""

    _tags = {"uses_torch": True}

    def __init__(self, ignore_seed: bool = False, random_state: int | None = None) -> None:
        self.ignore_seed = ignore_seed
        self.random_state = random_state

    def _fit(self, data, valid):
        import torch

        seed = 0 if self.ignore_seed else seed_of(self.random_state, self)
        g = torch.Generator().manual_seed(seed)
        self.w_ = torch.randn(data.input_size, data.target_size, generator=g).double().numpy()

    def _predict(self, X):
        return X @ self.w_  # (N, T, K)


class NumpyInit(TorchInit):
    """The same linear map drawn by numpy: tagged ``seeded``, not ``uses_torch``."""

    _tags = {"uses_torch": False, "seeded": True}

    def _fit(self, data, valid):
        seed = 0 if self.ignore_seed else seed_of(self.random_state, self)
        rng = np.random.default_rng(seed)
        self.w_ = rng.normal(size=(data.input_size, data.target_size))


class UnseededDraw(RealModel):
    """Tagged not deterministic, but takes no random_state."""

    _tags = {"deterministic": False}

    def _fit(self, data, valid):
        self.w_ = np.random.default_rng().normal(size=(data.input_size, data.target_size))

    def _predict(self, X):
        return X @ self.w_


def _one_line_failure(model, match: str, check=check_model) -> str:
    with pytest.raises(AssertionError, match=match) as info:
        check(model)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{type(model).__name__}: check_")
    return msg


@pytest.mark.parametrize("model, match", [
    (ReadsNextInput(), r"check_causal: outputs at steps <= 0 changed when the inputs after "
     r"step 0 were replaced \(real->real many-to-one\): predict differs by up to"),
    (LastTokenEverywhere(), r"check_causal: outputs at steps <= 0 changed when the inputs "
     r"after step 0 were replaced \(tokens->classes many-to-one\): predict gives other class "
     r"ids at 23 of 24 positions"),
    (DividesByLength(), r"check_causal: outputs at steps <= 0 changed when the inputs after "
     r"step 0 were cut off \(real->real many-to-one\)"),
], ids=["next-input", "last-token", "row-length"])
def test_causality_catches_models_that_look_ahead(model, match):
    _one_line_failure(model, match)


def test_causality_catches_forecasts_from_the_next_input():
    """On forecasting data reading X[t+1] scores perfectly: the check fits such data."""
    class ForecastPeek(ReadsNextInput):
        _tags = {"forecasting_only": True}

    _one_line_failure(ForecastPeek(), r"\(real->real forecasting\)", check_causal)


@pytest.mark.parametrize("decode", ["posterior", "viterbi"])
def test_causality_flags_the_hmm_smoothed_decoders(decode):
    """The HMM's optional whole-row decoders read later inputs by design (its docstring;
    the default ``decode="filter"`` is causal and passes)."""
    _one_line_failure(registry.models.get("hmm")(decode=decode),
                      r"check_causal: outputs at steps <= 0 changed", check_causal)


@pytest.mark.parametrize("model, match", [
    (StandardisesWithBatch(), r"check_rows_independent: predicting 8 of the 24 rows in "
     r"reverse order changed their outputs \(real->real many-to-one\): predict differs"),
    (RowCountFromFit(), r"check_rows_independent: real->real many-to-one, 8 of the 24 rows "
     r"in reverse order: predict raised AssertionError: RowCountFromFit._predict returned "
     r"shape \(24, 8, 2\), expected \(8, 8, 2\)"),
], ids=["batch-statistics", "row-count-from-fit"])
def test_row_independence_catches_models_that_read_the_batch(model, match):
    check_causal(model)  # causal in time: only the rows check tells
    _one_line_failure(model, match)


@pytest.mark.parametrize("model", [TorchInit, NumpyInit], ids=["uses_torch", "seeded"])
def test_random_state_must_change_a_seeded_fit(model):
    _one_line_failure(model(ignore_seed=True),
                      r"check_random_state_used: fits with random_state=7 and random_state=8 "
                      r"gave identical outputs \(real->real many-to-one; real->real "
                      r"many-to-many-synced\); expected different ones")
    check_model(model())  # the same model honouring its seed passes


def test_builtin_models_drawing_from_their_seed_are_tagged_seeded():
    # mlp (initial weights, shuffles), hmm (EM starts) and the torch nets draw from
    # random_state, so check_random_state_used holds them to it; ar and the Kalman
    # models with their default init draw nothing
    seeded = {type(m).__name__ for m in builtin_models() if m.tags()["seeded"]}
    assert seeded == {"FeedForward", "HiddenMarkov", "RNNModel", "IRNNModel", "LSTMModel",
                      "GRUModel"}


def test_random_state_is_required_of_a_model_tagged_not_deterministic():
    _one_line_failure(UnseededDraw(), r"check_random_state_used: a model with randomness in "
                      r"its fit .* must take a random_state parameter; it has none")


@pytest.mark.parametrize("model, match", [
    (HalfClassIds(), r"check_fit_predict_shapes: predict on training tokens->classes "
     r"many-to-one inputs: evaluation would refuse the outputs: predictions: expected class "
     r"ids in \[0, 3\) at the scored positions, got dtype float64, values 0.5..0.5"),
    (NegativeProbabilities(), r"check_fit_predict_shapes: predict on training "
     r"tokens->classes many-to-one inputs: evaluation would refuse the outputs: "
     r"predict_proba: expected probabilities \(>= 0, each row summing to 1\)"),
], ids=["half-class-ids", "negative-probabilities"])
def test_outputs_evaluation_refuses_fail_conformance(model, match):
    _one_line_failure(model, match)
    task = sb.make_task("jane-recall", lag=4)  # and evaluation does refuse them
    train, valid, test = task.splits(0, 20, 5, 20)
    with pytest.raises(SeqbenchError, match="expected"):
        sb.evaluate(model.fit(train, valid), task, test)


def test_integer_valued_float_class_ids_pass_as_evaluation_accepts_them():
    check_fit_predict_shapes(HalfClassIds(value=1.0))


def test_class_ids_at_unscored_steps_follow_the_same_rule():
    class HalfIdsBeforeTheEnd(HalfClassIds):
        def _predict(self, X):
            out = np.full(X.shape, self.value)
            out[:, -1] = 0
            return out

    _one_line_failure(HalfIdsBeforeTheEnd(), r"check_fit_predict_shapes: predict on training "
                      r"tokens->classes many-to-one inputs: the outputs at unscored steps break",
                      check_fit_predict_shapes)


class FlatProba(SeqModel):
    """Class probabilities of the wrong shape, (N, T) instead of (N, T, K)."""

    _tags = {"input_kinds": ("tokens",), "target_kinds": ("classes",)}

    def _fit(self, data, valid):
        self.k_ = data.target_size

    def _predict_proba(self, X):
        return np.full(X.shape, 1.0 / self.k_)


class RaisesInFit(FlatProba):
    def _fit(self, data, valid):
        raise ValueError("no data for me")


def test_a_wrong_shape_names_the_method_the_model_wrote():
    """A model that writes only _predict_proba is told that _predict_proba's shape is wrong,
    by predict and by predict_proba alike, in the check's one-line form."""
    msg = _one_line_failure(FlatProba(), r"FlatProba\._predict_proba returned shape "
                            r"\(\d+, \d+\), expected \(\d+, \d+, \d+\)")
    assert "._predict " not in msg
    data = sb.make_task("jane-recall", lag=2).sample(6, 0)
    model = FlatProba().fit(data)
    for method in (model.predict, model.predict_proba):
        with pytest.raises(AssertionError, match=r"_predict_proba returned shape \(6, \d+\), "
                           r"expected \(6, \d+, 10\)"):
            method(data.X)


def test_an_exception_inside_the_model_fails_the_check_in_one_line():
    msg = _one_line_failure(RaisesInFit(), r"raised ValueError: no data for me")
    assert msg.startswith("RaisesInFit: check_")
