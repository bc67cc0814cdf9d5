"""Every shipped suite validates, and its smallest setting runs: every task entry at its
first (smallest) sweep point against every model entry, on tiny data with tiny budgets.
No job may fail; a pair the model's tags exclude is recorded as skipped. And the loader
refuses, in one line before the store is touched, values the jobs could not run with or
the tables could not tell apart."""

import re
import sqlite3

import pytest

from seqbench.cli import main
from seqbench.runner import make_executor
from seqbench.suite import MAX_DATA_SIZE, SEED_LIMIT, builtin_suites, load_suite, parse_suite
from seqbench.testing import QUICK

SUITES = list(builtin_suites().values())
TINY = {"n_train": 40, "n_valid": 10, "n_test": 20}


def smallest_jobs(suite):
    """The first grid point of every task entry x the first of every model entry, seed 0."""
    jobs, seen = [], set()
    for job in suite.jobs():
        t_first = next(t for t in suite.tasks if t.label == job["task_label"]).grid[0]
        m_first = next(m for m in suite.models if m.label == job["model_label"]).grid[0]
        key = (job["task_label"], job["model_label"])
        if key in seen or job["seed"] != suite.seeds[0]:
            continue
        if any(job["task_params"][k] != v for k, v in t_first.items()):
            continue
        if any(job["model_params"][k] != v for k, v in m_first.items()):
            continue
        seen.add(key)
        params = {**job["model_params"], **{k: v for k, v in QUICK.items()
                                            if k in job["model_params"]}}
        jobs.append({**job, "data": TINY, "model_params": params})
    return jobs


def test_the_suites_are_there():
    names = {p.stem for p in SUITES}
    assert {"smoke", "longrange", "forecasting", "shapes", "classics"} <= names


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_validates_and_its_smallest_setting_runs(path):
    suite = load_suite(path)
    jobs = smallest_jobs(suite)
    assert len(jobs) == len(suite.tasks) * len(suite.models)
    records = list(make_executor("local", jobs=2).run(jobs))  # two workers, one thread each
    failed = [(r["model"], r["task"], r["error"].splitlines()[0])
              for r in records if r["status"] not in ("ok", "skipped")]
    assert not failed, failed
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["score"] is not None for r in ok)


BASE = """\
[suite]
name = "tiny"
description = "two lags"
seeds = [0, 1]

[data]
n_train = 30
n_valid = 5
n_test = 20

[[task]]
name = "jane-recall"
lag = [2, 4]
n_names = 4

[[model]]
name = "chance"
"""
RUN = ["run", "--executor", "inline"]
SEEDS = r"\[suite\]\.seeds: expected a list of ints in \[0, 2\*\*32\), got "
TWO_CHANCE = 'name = "chance"\nlabel = "m"\n\n[[model]]\nname = "chance"\nstrategy = "uniform"\n'


@pytest.mark.parametrize("edit, message", [
    # seeds: the models' random_state range, [0, 2**32)
    (("seeds = [0, 1]", "seeds = [0, 18446744073709551615]"),
     SEEDS + r"\[0, 18446744073709551615\]$"),
    (("seeds = [0, 1]", "seeds = 99999999999999999999"),
     SEEDS + "99999999999999999999$"),
    (("seeds = [0, 1]", f"seeds = [0, {2**32}]"), SEEDS + r"\[0, 4294967296\]$"),
    (("seeds = [0, 1]", "seeds = [-1]"), SEEDS + r"\[-1\]$"),
    # a name that is not a string
    (('name = "jane-recall"', 'name = ["jane-recall"]'),
     r"\[\[task\]\] #1\.name: expected a string \(a task name\), got \['jane-recall'\]$"),
    (('name = "chance"', "name = {x=1}"),
     r"\[\[model\]\] #1\.name: expected a string \(a model name\), got \{'x': 1\}$"),
    (('name = "chance"', 'name = "chance"\nlabel = ["m"]'),
     r"\[\[model\]\] #1\.label: expected a non-empty string, got \['m'\]$"),
    (('name = "chance"', 'name = "chance"\nlabel = "  "'),
     r"\[\[model\]\] #1\.label: expected a non-empty string, got '  '$"),
    # two configurations the tables would show under one name
    (("n_names = 4", 'n_names = 4\n\n[[task]]\nname = "adding"\nlabel = "jane-recall lag=2"\n'
                     "length = 10"),
     r"\[\[task\]\] #2: task row name 'jane-recall lag=2' is also that of \[\[task\]\] #1, .*"
     "give each a distinct 'label'$"),
    (('name = "jane-recall"', 'name = "adding"\nlabel = "jane-recall lag=2"\nlength = 10\n\n'
                              '[[task]]\nname = "jane-recall"'),
     r"\[\[task\]\] #2: task row name 'jane-recall lag=2' is also that of \[\[task\]\] #1"),
    (("n_names = 4", 'n_names = 4\n\n[[task]]\nname = "jane-recall"\nlabel = "jane-recall lag=4"\n'
                     "lag = 4\nn_names = 5"),
     r"\[\[task\]\] #2: task row name 'jane-recall lag=4' is also that of \[\[task\]\] #1"),
    (('name = "chance"', TWO_CHANCE.replace('strategy = "uniform"', 'label = "m "')),
     r"\[\[model\]\] #2: model label 'm' appears twice \(also \[\[model\]\] #1\)"),
    (('name = "chance"', TWO_CHANCE.replace('strategy = "uniform"',
                                            'label = "m strategy=uniform"\nstrategy = "uniform"')
      .replace('name = "chance"\nlabel = "m"', 'name = "chance"\nlabel = "m"\n'
               'strategy = ["prior", "uniform"]')),
     r"\[\[model\]\] #2: model column name 'm strategy=uniform' is also that of "
     r"\[\[model\]\] #1"),
    # data sizes: at most 10**9 sequences a split
    (("n_test = 20", "n_test = 99999999999999999999"),
     r"\[data\]\.n_test: expected an int >= 1 and <= 10\*\*9, got 99999999999999999999$"),
    (("n_train = 30", f"n_train = {10**9 + 1}"),
     r"\[data\]\.n_train: expected an int >= 1 and <= 10\*\*9, got 1000000001$"),
    (("n_names = 4", "n_names = 4\ndata = { n_valid = 1000000001 }"),
     r"\[\[task\]\] #1\.data\.n_valid: expected an int >= 0 and <= 10\*\*9, got 1000000001$"),
    # the [suite] table's name and description
    (('name = "tiny"', 'name = "   "'),
     r"\[suite\]\.name: expected a non-blank string, got '   '$"),
    (('description = "two lags"', "description = 3"),
     r"\[suite\]\.description: expected a string, got 3$"),
    (('description = "two lags"', 'description = ["two", "lags"]'),
     r"\[suite\]\.description: expected a string, got \['two', 'lags'\]$"),
])
def test_a_bad_suite_is_refused_in_one_line_before_the_store_is_touched(tmp_path, capsys, edit,
                                                                         message):
    assert edit[0] in BASE
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace(*edit))
    fresh = tmp_path / "fresh.sqlite"
    assert main([*RUN, str(bad), "--store", str(fresh)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"seqbench: error: suite {bad}, "), err
    assert re.search(message, err), err
    assert not fresh.exists()
    # a store that holds results already is left as it was
    good, store = tmp_path / "good.toml", tmp_path / "store.sqlite"
    good.write_text(BASE)
    assert main([*RUN, str(good), "--store", str(store), "-q"]) == 0
    before = sqlite3.connect(store).execute("SELECT hash, status, score FROM runs").fetchall()
    assert len(before) == 4
    capsys.readouterr()
    assert main([*RUN, str(bad), "--store", str(store)]) == 2
    assert re.search(message, capsys.readouterr().err.strip())
    assert sqlite3.connect(store).execute("SELECT hash, status, score FROM runs").fetchall() \
        == before


def test_the_bounds_themselves_load_and_labels_are_stripped():
    """The largest seed and split size load; a label is stripped of its spaces; entries
    whose shown names differ collide in nothing (a value listed twice in one sweep is
    refused: tests/test_suite_cli.py)."""
    text = (BASE.replace("seeds = [0, 1]", f"seeds = [0, {SEED_LIMIT - 1}]")
            .replace("n_test = 20", f"n_test = {MAX_DATA_SIZE}")
            .replace('name = "chance"', TWO_CHANCE.replace('"m"', '"  m  "')))
    suite = parse_suite(text, "edge.toml")
    assert suite.seeds == [0, 2**32 - 1] and suite.data["n_test"] == 10**9
    assert [m.label for m in suite.models] == ["m", "chance"]
    assert len(suite.jobs()) == 2 * 2 * 2
    jobs = suite.jobs()
    assert {j["model_label"] for j in jobs} == {"m", "chance"}


def test_a_suite_file_with_a_byte_order_mark_loads(tmp_path, capsys):
    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_text(BASE, encoding="utf-8")
    marked.write_text(BASE, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    suite = load_suite(marked)
    assert suite.name == "tiny" and suite.text == BASE
    assert [j["hash"] for j in suite.jobs()] == [j["hash"] for j in load_suite(plain).jobs()]
    store = tmp_path / "s.sqlite"
    assert main([*RUN, str(marked), "--store", str(store), "-q"]) == 0
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone()[0] == 4
