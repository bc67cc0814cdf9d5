"""Misuse of the public API that used to give numbers for the wrong data or a traceback:
evaluate with data that is not the task's, and a registered class of the wrong kind."""

from __future__ import annotations

import numpy as np
import pytest

import seqbench as sb
from seqbench import registry
from seqbench.data import SeqData
from seqbench.errors import IncompatibleError, SeqbenchError
from seqbench.tasks.jane import JaneRecall


@pytest.fixture(scope="module")
def fitted():
    train, _, test = sb.make_task("jane-recall", lag=4).splits(0, 200, 10, 100)
    return sb.make_model("ar", p=4).fit(train), test


def test_evaluate_on_its_own_task_gives_the_tasks_chance(fitted):
    model, test = fitted
    got = sb.evaluate(model, sb.make_task("jane-recall", lag=4), test)
    assert got["chance"] == pytest.approx(0.1)  # 1 / n_names, the default 10 names


@pytest.mark.parametrize("other, field", [
    (("jane-recall", {"lag": 4, "n_names": 5}), "input_size"),   # a smaller vocabulary
    (("copy-memory", {"blanks": 2}), "input_size"),
    (("adding", {"length": 10}), "input_kind"),
    (("ar-process", {}), "input_kind"),
])
def test_evaluate_refuses_data_of_another_task(fitted, other, field):
    """Scores of one task's data under another task's metric, chance and oracle used to be
    returned without a word (jane data against copy-memory: its cross-entropy and log 8)."""
    model, test = fitted
    name, params = other
    with pytest.raises(SeqbenchError, match=rf"evaluate: data\.{field} is .* task {name!r} "
                                            r"has .*: expected a split of that task"):
        sb.evaluate(model, sb.make_task(name, **params), test)


def test_evaluate_accepts_a_split_missing_the_largest_ids(fitted):
    """Sizes a hand-made split infers from its values may fall short of the task's."""
    model, test = fitted
    X = np.minimum(test.X, 5)
    small = SeqData(X, test.Y, test.mask, meta=test.meta)
    assert small.input_size < test.input_size
    got = sb.evaluate(model, sb.make_task("jane-recall", lag=4), small)
    assert np.isfinite(got["score"])


def test_evaluate_names_wrong_arguments_and_a_model_without_probabilities(fitted):
    model, test = fitted
    task = sb.make_task("jane-recall", lag=4)
    for args, what in (((model, task, (test.X, test.Y)), "data: expected SeqData"),
                       ((model, "jane-recall", test), "task: expected a task"),
                       ((task, model, test), "model: expected a fitted model")):
        with pytest.raises(SeqbenchError, match=what):
            sb.evaluate(*args)
    copy = sb.make_task("copy-memory", blanks=2)  # scored by cross-entropy
    train, _, ctest = copy.splits(0, 50, 10, 20)
    lds = sb.make_model("lds", n_states=2, max_iter=2).fit(train)
    with pytest.raises(IncompatibleError, match="evaluate: LDSModel offers no predict_proba"):
        sb.evaluate(lds, copy, ctest)


def test_only_models_and_tasks_can_be_registered():
    with pytest.raises(SeqbenchError, match=r"model 'foo' \(register\): expected a subclass "
                                            r"of seqbench\.models\.base\.SeqModel, got <class "):
        registry.models.register("foo", dict)
    with pytest.raises(SeqbenchError, match="expected a subclass of seqbench.tasks.base.Task"):
        registry.tasks.register("foo", sb.make_model("ar").__class__)
    with pytest.raises(SeqbenchError, match="SeqModel"):
        registry.models.register("foo", JaneRecall)
    assert "foo" not in registry.models.names()


def test_an_entry_point_to_the_wrong_kind_of_class_is_one_line(monkeypatch, capsys):
    """An installed plugin whose entry point names a task in the models group: listing the
    models says so on its line and goes on; a suite naming it is refused at load."""
    from importlib.metadata import EntryPoint

    from seqbench.cli import main

    ep = EntryPoint("bad-model", "seqbench.tasks.jane:JaneRecall", "seqbench.models")
    eps = {**registry.models._entry_points(), "bad-model": ep}
    monkeypatch.setattr(registry.models, "_eps", eps)
    monkeypatch.setattr(registry.models, "_loaded", {})
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert ("bad-model: model 'bad-model' (seqbench.tasks.jane:JaneRecall): expected a "
            "subclass of seqbench.models.base.SeqModel") in out
    assert "lstm:" in out.split("bad-model:")[1]  # the listing went on after it
    with pytest.raises(SeqbenchError, match="expected a subclass"):
        sb.make_model("bad-model")


def test_a_plugin_claiming_a_built_in_name_disables_that_name_only(monkeypatch, capsys):
    """Two installed packages declare the entry point `lstm` for different classes: a suite
    or make_model naming `lstm` is refused in one line naming both; every other model (and
    the listing) still works."""
    from importlib.metadata import EntryPoint, entry_points

    from seqbench.cli import main

    real = list(entry_points(group="seqbench.models"))
    rival = EntryPoint("lstm", "seqbench.models.recurrent:GRUModel", "seqbench.models")
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, rival]
                        if group == "seqbench.models" else entry_points(group=group))
    monkeypatch.setattr(registry.models, "_eps", None)
    monkeypatch.setattr(registry.models, "_clashes", {})  # restored after, as _eps is
    monkeypatch.setattr(registry.models, "_loaded", {})
    with pytest.raises(SeqbenchError, match=r"'lstm' is registered twice: "
                       r"seqbench.models.recurrent:GRUModel and "
                       r"seqbench.models.recurrent:LSTMModel"):
        sb.make_model("lstm")
    assert type(sb.make_model("gru")).__name__ == "GRUModel"
    assert "lstm" in registry.models.names()
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "lstm: model name 'lstm' is registered twice" in out
    assert "gru:" in out and "rnn:" in out


def test_a_plugin_constructor_that_raises_is_one_line_at_suite_load(monkeypatch, tmp_path,
                                                                    capsys):
    """A plugin's own check raises ValueError (not SeqbenchError): the suite is refused with
    exit 2 and one line naming the model and the plugin's message; no store is made."""
    from seqbench.cli import main
    from seqbench.models.baseline import ChanceBaseline

    class Picky(ChanceBaseline):
        def __init__(self, alpha: float = 1.0):
            if alpha < 0:
                raise ValueError("alpha must be >= 0")
            self.alpha = alpha

    monkeypatch.setitem(registry.models._extra, "picky", Picky)
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\n[[task]]\nname = "jane-recall"\nlag = 4\n'
                     '[[model]]\nname = "picky"\nalpha = -1.0\n')
    store = tmp_path / "s.sqlite"
    assert main(["run", str(suite), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"seqbench: error: suite {suite}, model 'picky': "
                   "ValueError: alpha must be >= 0"]
    assert not store.exists()
    with pytest.raises(SeqbenchError, match="model 'picky': ValueError: alpha must be >= 0"):
        sb.make_model("picky", alpha=-1.0)


def test_a_task_plugin_without_a_name_attribute_is_named_by_its_registry_name(monkeypatch):
    class Renamed(JaneRecall):
        name = ""

    monkeypatch.delitem(registry.tasks._extra, "jane-again", raising=False)
    registry.tasks.register("jane-again", Renamed)
    try:
        with pytest.raises(SeqbenchError, match=r"^task 'jane-again', parameter 'lag'"):
            sb.make_task("jane-again", lag=-1)
    finally:
        registry.tasks._extra.pop("jane-again", None)
