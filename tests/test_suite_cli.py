"""Suite files, the store, the runner and the CLI, end to end."""

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from seqbench import registry
from seqbench.cli import main
from seqbench.errors import SeqbenchError
from seqbench.models.baseline import ChanceBaseline
from seqbench.suite import canonical_hash, parse_suite

SUITE = """
[suite]
name = "tiny"
seeds = [0, 1]

[data]
n_train = 300
n_valid = 50
n_test = 200

[budget]
max_steps = 30

[[task]]
name = "jane-recall"
lag = [2, 5]
n_names = 4

[[model]]
name = "chance"

[[model]]
name = "lstm"
hidden_size = 8
eval_every = 10
"""


# these tests exercise suites and the store; tests/test_runner.py covers the executors
RUN = ["run", "--executor", "inline"]


def write(tmp_path, text, name="suite.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_sweeps_expand_and_hashes_ignore_key_order(tmp_path):
    suite = parse_suite(SUITE, "tiny.toml")
    jobs = suite.jobs()
    assert len(jobs) == 2 * 2 * 2  # lags x models x seeds
    assert len({j["hash"] for j in jobs}) == 8
    lstm = [j for j in jobs if j["model"] == "lstm"][0]
    assert lstm["model_params"]["max_steps"] == 30          # the budget reached the model
    assert lstm["task_sweep"] == {"lag": 2} and lstm["model_sweep"] == {}
    reordered = SUITE.replace('name = "jane-recall"\nlag = [2, 5]\nn_names = 4',
                              'n_names = 4\nlag = [2, 5]\nname = "jane-recall"')
    assert reordered != SUITE
    assert [j["hash"] for j in parse_suite(reordered, "x.toml").jobs()] == [j["hash"] for j in jobs]
    spec = {k: lstm[k] for k in ("task", "task_version", "task_params", "model", "model_version",
                                 "model_params", "seed", "data")}
    assert canonical_hash(spec) == lstm["hash"]


def test_zip_advances_sweeps_together_and_the_rest_form_a_product():
    """``zip`` pairs the i-th values of its sweeps; other sweeps of the table multiply them;
    several groups are each their own axis; a zipped point is the same job (hash) as that
    point written without sweeps."""
    def chance_jobs(text):
        return [j for j in parse_suite(text, "z.toml").jobs()
                if j["model"] == "chance" and j["seed"] == 0]

    zipped = SUITE.replace("lag = [2, 5]\nn_names = 4", 'lag = [2, 5, 9]\nlag_max = [4, 7, 12]\n'
                           'n_names = [4, 6]\nzip = ["lag_max", "lag"]')
    jobs = chance_jobs(zipped)
    points = sorted((j["task_sweep"]["lag"], j["task_sweep"]["lag_max"],
                     j["task_sweep"]["n_names"]) for j in jobs)
    assert points == [(lag, lag_max, n) for lag, lag_max in ((2, 4), (5, 7), (9, 12))
                      for n in (4, 6)]
    single = SUITE.replace("lag = [2, 5]\nn_names = 4", "lag = 9\nlag_max = 12\nn_names = 6")
    (alone,) = chance_jobs(single)
    assert alone["hash"] in {j["hash"] for j in jobs}
    two = SUITE.replace("lag = [2, 5]\nn_names = 4", 'lag = [2, 5]\nlag_max = [4, 7]\n'
                        'n_names = [4, 6]\nn_filler = [20, 30]\n'
                        'zip = [["lag", "lag_max"], ["n_names", "n_filler"]]')
    pts = {tuple(j["task_sweep"][k] for k in ("lag", "lag_max", "n_names", "n_filler"))
           for j in chance_jobs(two)}
    assert pts == {(2, 4, 4, 20), (2, 4, 6, 30), (5, 7, 4, 20), (5, 7, 6, 30)}


@pytest.mark.parametrize("edit, message", [
    (('name = "lstm"', 'name = "lstn"'), "unknown model 'lstn'; available: .*lstm"),
    (("hidden_size = 8", "hiden_size = 8"),
     "model 'lstm': unknown parameter 'hiden_size'; accepted: hidden_size"),
    (("n_names = 4", "n_names = [[4]]"), "parameter 'n_names': expected int"),
    (("hidden_size = 8", 'hidden_size = "big"'), "parameter 'hidden_size': expected int"),
    (("hidden_size = 8", "hidden_size = -8"), "parameter 'hidden_size': expected an int >= 1"),
    (("hidden_size = 8", "hidden_size = 8\nlr = nan"), "'lr': expected finite numbers, got nan"),
    (("max_steps = 30", "max_step = 30"), r"\[budget\].max_step: matches no parameter"),
    (("n_train = 300", "n_train = -3"), r"\[data\].n_train: expected an int >= 1"),
    (("lag = [2, 5]", "lag = [2, -5]"),
     "suite .*, task 'jane-recall': at the sweep's point lag=-5: parameter 'lag': expected "
     "an int >= 0"),  # the task named once
    (("hidden_size = 8", "hidden_size = 99999999999999999999"),
     "parameter 'hidden_size': expected integers of at most 64 bits"),
    (("n_names = 4", "n_names = [4, -9223372036854775809]"),
     "parameter 'n_names': expected integers of at most 64 bits"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "expected distinct seeds"),
    (("hidden_size = 8", 'hidden_size = 8\ndevice = "tpu"'),
     "parameter 'device': expected 'auto', 'cpu' or 'cuda\\[:i\\]', got 'tpu'"),
    (("max_steps = 30", "max_steps = 0"), r"\[budget\] applied to \[\[model\]\] #2 \('lstm'\): "
     "LSTMModel parameter 'max_steps': expected an int >= 1, got 0"),
    (("max_steps = 30", "max_steps = 30\nlr = nan"), r"\[budget\].lr: expected finite numbers"),
    (("max_steps = 30", 'max_steps = 30\ndevice = "tpu"'),
     r"\[budget\].device: expected 'auto', 'cpu' or 'cuda\[:i\]', got 'tpu'"),
    (("max_steps = 30", "max_steps = 30\ntimeout = nan"),
     r"\[budget\].timeout: expected seconds in \(0, 1e\+06\], got nan"),
    (("max_steps = 30", "max_steps = 30\ntimeout = inf"),
     r"\[budget\].timeout: expected seconds in \(0, 1e\+06\], got inf"),
    (('name = "chance"', 'name = "chance"\nlabel = 5'),
     r"\[\[model\]\] #1.label: expected a non-empty string, got 5"),
    (("hidden_size = 8", "hidden_size = 8\nrandom_state = -3"),
     r"'random_state': expected None or an int in \[0, 2\*\*32\)"),
    (("[suite]", "[suite\n"), "not valid TOML"),
    (("lag = [2, 5]", "lag = [2, 5, 2]"), r"\[\[task\]\] #1: its sweep lists one point twice "
     r"\('jane-recall lag=2' and 'jane-recall lag=2' are the same job\); list each value once"),
    (("hidden_size = 8", "hidden_size = 8\nlr = [0.01, 1e-2]"),
     r"\[\[model\]\] #2: its sweep lists one point twice"),
    (("hidden_size = 8", "hidden_size = 8\nlr = [1, 1.0]"),
     r"\('lstm lr=1' and 'lstm lr=1.0' are the same job\)"),
    (('name = "chance"', 'name = "chance"\nlabel = "metric"'),
     r"\[\[model\]\] #1: model column name 'metric' is one of the tables' own columns"),
    (('name = "chance"', 'name = "chance"\nlabel = "(chance)"'), "'\\(chance\\)' is one of"),
    (('name = "chance"', 'name = "chance"\nlabel = "task"'), "'task' is one of"),
    (("lag = [2, 5]", "lag = [2, 5]\nlag_max = [4, 6, 3]"), r"task 'jane-recall': at the "
     r"sweep's point lag=5 lag_max=4: parameter 'lag_max': expected None or an int >= lag"),
    (("lag = [2, 5]", 'lag = [2, 5]\nlag_max = [4, 6, 8]\nzip = ["lag", "lag_max"]'),
     "zip: zipped sweeps need lists of one length, got lag 2, lag_max 3"),
    (("lag = [2, 5]", 'lag = [2, 5]\nlag_max = 6\nzip = ["lag", "lag_max"]'),
     "zip: parameter 'lag_max' is not a sweep"),
    (("lag = [2, 5]", 'lag = [2, 5]\nzip = ["lag", "lagmax"]'),
     "zip: unknown parameter 'lagmax'; accepted: "),
    (("lag = [2, 5]", 'lag = [2, 5]\nzip = ["lag"]'),
     r"\[\[task\]\] #1.zip: expected a list of at least two swept parameter names"),
    (("lag = [2, 5]", 'lag = [2, 5]\nzip = [["lag", "n_names"], ["lag", "lag_max"]]'),
     r"\[\[task\]\] #1.zip: parameter 'lag' is zipped twice"),
    (("lag = [2, 5]", 'lag = [2, 5]\nlag_max = [3, 4]\nzip = ["lag", "lag_max"]'),
     r"at the sweep's point lag=5 lag_max=4: parameter 'lag_max'"),
])
def test_bad_suites_give_one_line_exit_2_and_leave_the_store_alone(tmp_path, capsys, edit, message):
    store = tmp_path / "store.sqlite"
    assert main([*RUN, str(write(tmp_path, SUITE, "ok.toml")), "--store", str(store), "-q"]) == 0
    before = sqlite3.connect(store).execute("SELECT hash, status, score FROM runs").fetchall()
    capsys.readouterr()
    bad = write(tmp_path, SUITE.replace(*edit))
    assert main([*RUN, str(bad), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"seqbench: error: suite {bad}")
    assert __import__("re").search(message, err), err
    after = sqlite3.connect(store).execute("SELECT hash, status, score FROM runs").fetchall()
    assert after == before


def test_a_directory_for_a_suite_or_a_store_is_named_as_such(tmp_path, capsys):
    assert main([*RUN, str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"seqbench: error: suite {tmp_path}: expected a suite file (.toml), got a directory")
    assert main(["results", "--store", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"seqbench: error: store {tmp_path}: expected a file path, got a directory")


def test_a_suite_file_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(SUITE.replace("tiny", "t\u00e9").encode("latin-1"))
    assert main([*RUN, str(bad), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "expected a UTF-8 TOML text file" in err, err
    assert not (tmp_path / "s.sqlite").exists()


def test_a_number_written_as_an_int_or_a_float_is_one_job():
    """``weight_decay = 0`` (an int) is the default 0.0: the same job, the same hash."""
    plain = parse_suite(SUITE, "a.toml").jobs()
    spelled = parse_suite(SUITE.replace("hidden_size = 8", "hidden_size = 8\nweight_decay = 0"),
                          "b.toml").jobs()
    assert [j["hash"] for j in spelled] == [j["hash"] for j in plain]
    lstm = [j for j in spelled if j["model"] == "lstm"][0]
    assert lstm["model_params"]["weight_decay"] == 0.0
    assert isinstance(lstm["model_params"]["weight_decay"], float)


def test_run_twice_trains_nothing_the_second_time(tmp_path, capsys):
    suite, store = write(tmp_path, SUITE), tmp_path / "s.sqlite"
    assert main([*RUN, str(suite), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "8 to run" in out and "ran 8 job(s)" in out
    rows = sqlite3.connect(store).execute(
        "SELECT status, provenance, n_params FROM runs").fetchall()
    assert len(rows) == 8 and all(r[0] == "ok" for r in rows)
    prov = json.loads(rows[0][1])
    for key in ("python", "seqbench", "torch", "numpy", "host"):
        assert prov[key]
    assert main([*RUN, str(suite), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "8 already in the store, 0 to run" in out and "ran 0 job(s), 8 already done" in out
    assert "jane-recall lag=2" in out and "(chance)" in out
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone()[0] == 8


class FailsOnLongLags(ChanceBaseline):
    """Raises inside fit when the sequences are longer than 17 steps (lag 5 here)."""

    def _fit(self, data, valid):
        if data.T > 17:
            raise RuntimeError(f"cannot fit sequences of {data.T} steps")
        super()._fit(data, valid)


def test_a_failing_job_is_recorded_and_the_suite_goes_on(tmp_path, capsys):
    text = SUITE.replace('name = "chance"', 'name = "fails-on-long-lags"')
    store = tmp_path / "s.sqlite"
    registry.models.register("fails-on-long-lags", FailsOnLongLags)
    try:
        # a failed job is an error: exit status 1, after the whole suite ran
        assert main([*RUN, str(write(tmp_path, text)), "--store", str(store), "-q"]) == 1
    finally:
        registry.models._extra.pop("fails-on-long-lags")
    out = capsys.readouterr().out
    assert "not ok: 2 failed" in out
    rows = sqlite3.connect(store).execute("SELECT model, status, error FROM runs").fetchall()
    assert sorted((m, st) for m, st, _ in rows) == (
        [("fails-on-long-lags", "failed")] * 2 + [("fails-on-long-lags", "ok")] * 2
        + [("lstm", "ok")] * 4)
    assert all("RuntimeError: cannot fit sequences of 20 steps" in e
               for _, st, e in rows if st == "failed")
    assert main(["results", "--store", str(store), "--errors"]) == 0
    assert capsys.readouterr().out.count("failed: fails-on-long-lags") == 2


def test_skipped_pairs_are_recorded_with_the_reason(tmp_path):
    from seqbench.registry import models
    from seqbench.runner import run_job

    job = parse_suite(SUITE, "t.toml").jobs()[0]
    job = {**job, "model": "real-only", "model_params": {}}
    from seqbench.models.baseline import ChanceBaseline

    class RealOnly(ChanceBaseline):
        _tags = {"input_kinds": ("real",)}

    models.register("real-only", RealOnly)
    try:
        rec = run_job(job)
    finally:
        models._extra.pop("real-only")
    assert rec["status"] == "skipped" and "takes real inputs, not tokens" in rec["error"]


def test_list_shows_models_and_tasks_with_parameters(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "lstm:" in out and "hidden_size=64" in out and "chance:" in out
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "jane-recall:" in out and "lag=10" in out and "many-to-one" in out


def test_shipped_suites_run_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    """The suites ship inside the package: `seqbench run smoke` finds them from any working
    directory (a pip install has no tasks/ folder), a file of that name in the working
    directory wins, `list suites` shows them with their job counts, and a name that is
    neither says which names there are."""
    from seqbench.suite import load_suite

    monkeypatch.chdir(tmp_path)
    smoke = load_suite("smoke")
    assert smoke.name == "smoke" and len(smoke.jobs()) == 36   # 2 lags x 9 models x 2 seeds
    assert load_suite("longrange.toml").name == "longrange"
    (tmp_path / "smoke.toml").write_text(SUITE)
    assert load_suite("smoke.toml").name == "tiny"  # a file of that name here wins
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    for name, jobs in (("smoke", 36), ("longrange", 1026), ("classics", 330)):
        assert f"{name}: " in out and f"    {jobs} jobs; " in out.split(f"{name}: ")[1]
    assert main(["run", "nosuch", "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("seqbench: error: suite nosuch: no such file (the shipped suites, "
                           "by name: classics, forecasting, longrange, shapes, smoke)")
    assert not (tmp_path / "s.sqlite").exists()
    assert main(["list"]) == 0                                  # all three lists
    out = capsys.readouterr().out
    assert "# models\n" in out and "# tasks\n" in out and "# suites\n" in out


def test_list_shows_a_required_parameter_by_its_name_alone(monkeypatch, capsys):
    class Needs(ChanceBaseline):
        def __init__(self, k, smoothing: float = 1.0):
            self.k = k
            self.smoothing = smoothing

    monkeypatch.setitem(registry.models._extra, "needs-k", Needs)
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "    k, smoothing=1.0\n" in out.split("needs-k:")[1]


def test_unknown_store_directory_and_results_on_missing_store(tmp_path, capsys):
    assert main(["results", "--store", str(tmp_path / "nope.sqlite")]) == 2
    assert "no such file" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*RUN, str(write(tmp_path, SUITE)), "--store", str(blocker / "x.sqlite")]) == 2


def test_help_for_every_command():
    for args in (["--help"], ["run", "--help"], ["list", "--help"], ["results", "--help"]):
        out = subprocess.run([sys.executable, "-m", "seqbench.cli", *args], capture_output=True,
                             text=True, check=True).stdout
        assert "usage: seqbench" in out


def test_usage_errors_are_one_line_with_exit_code_2():
    """A mistyped option value, an unknown option or command: one line on stderr that says
    where the usage is, exit status 2, as `python -m seqbench` too."""
    for args, want in ((["run", "--timeout", "abc", "x.toml"],
                        "seqbench run: error: argument --timeout: invalid float value: 'abc' "
                        "(see seqbench run --help)"),
                       (["bogus"], "invalid choice: 'bogus'"),
                       (["results", "--nope"], "unrecognized arguments: --nope")):
        done = subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True,
                              text=True)
        assert done.returncode == 2, args
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert want in done.stderr


def test_registry_errors_list_what_is_accepted():
    with pytest.raises(SeqbenchError, match="unknown model 'nope'; available: .*chance.*lstm"):
        registry.make_model("nope")
    with pytest.raises(SeqbenchError, match="unknown parameter 'hiden'; accepted: hidden_size"):
        registry.make_model("lstm", hiden=3)
    with pytest.raises(SeqbenchError, match="expected int like the default 64, got list"):
        registry.make_model("lstm", hidden_size=[3])


def test_a_model_without_probabilities_is_skipped_on_a_cross_entropy_task():
    from seqbench.runner import run_job

    suite = parse_suite("""
[data]
n_train = 20
n_valid = 5
n_test = 10
[[task]]
name = "copy-memory"
blanks = 5
[[model]]
name = "lds"
[[model]]
name = "chance"
""", "ce.toml")
    lds, chance = (run_job(job) for job in suite.jobs())
    assert lds["status"] == "skipped"
    assert lds["error"] == "LDSModel offers no predict_proba, which the task's metric needs"
    assert chance["status"] == "ok" and chance["metric"] == "cross_entropy"
