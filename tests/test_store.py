"""The store's suite job lists, read-only opening, and what results/report/compare show.

Expected numbers come from the store's raw rows read with plain ``sqlite3`` (not through
``Store.frame``), from analytic chance levels and from the paired t statistic's formula.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqbench import report
from seqbench.cli import main
from seqbench.runner import stopped_record
from seqbench.store import Store, json_value
from seqbench.suite import parse_suite

SUITE = """
[suite]
name = "{name}"
seeds = [0, 1]

[data]
n_train = 120
n_valid = 20
n_test = 60

[[task]]
name = "jane-recall"
lag = [2, 6]
n_names = 4

[[model]]
name = "chance"

[[model]]
name = "ar"
label = "{label}"
p = {p}
"""

RUN = ["run", "--executor", "inline", "-q"]


def suite_file(tmp_path, name="tiny", label="ar", p=16, file="suite.toml", text=None):
    path = tmp_path / file
    path.write_text(textwrap.dedent(text or SUITE.format(name=name, label=label, p=p)))
    return path


def run(tmp_path, store, **kw):
    assert main([*RUN, str(suite_file(tmp_path, **kw)), "--store", str(store)]) == 0


def raw_scores(store, where: str) -> list[float]:
    con = sqlite3.connect(store)
    try:
        return [r[0] for r in con.execute(f"SELECT score FROM runs WHERE {where}")]
    finally:
        con.close()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table(out: str) -> pd.DataFrame:
    """The first results table printed in ``out`` (header line after ``suite NAME``)."""
    lines = out.strip().splitlines()
    head = lines[1].split()
    rows = {}
    for line in lines[3:]:
        if not line.strip() or line.startswith("suite "):
            break
        m = re.match(r"(jane-recall lag=\d+)\s+(\S+ \S)\s+(\S+)\s+(.*)$", line)
        rows[m.group(1)] = [m.group(2), m.group(3), *m.group(4).split()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=["metric", *head[1:]])


# --------------------------------------------------------------------------------------
# A suite's tables show its current jobs, under its current labels
# --------------------------------------------------------------------------------------

def test_a_renamed_suite_shows_the_jobs_it_shares_with_its_old_name(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, name="tiny")
    capsys.readouterr()
    run(tmp_path, store, name="other", file="other.toml")
    out = capsys.readouterr().out
    assert "ran 0 job(s), 8 already done" in out and "(no results)" not in out
    assert main(["results", "--store", str(store), "--suite", "other"]) == 0
    t = table(capsys.readouterr().out)
    want = np.mean(raw_scores(store, "model = 'ar' AND json_extract(task_params, '$.lag') = 2"))
    assert t.loc["jane-recall lag=2", "ar"] == f"{want:.3f}"
    assert main(["report", "--store", str(store), "--suite", "other", "--no-plots",
                 "--format", "csv", "--out", str(tmp_path / "rep")]) == 0
    cells = pd.read_csv(tmp_path / "rep" / "cells.csv")
    assert len(cells) == 4 and set(cells["suite"]) == {"other"}


def test_a_relabelled_model_shows_its_new_label(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, label="ar")
    run(tmp_path, store, label="ar-p16")
    capsys.readouterr()
    assert main(["results", "--store", str(store)]) == 0
    t = table(capsys.readouterr().out)
    assert list(t.columns) == ["metric", "(chance)", "chance", "ar-p16"]


def test_one_configuration_under_two_labels_fills_both_columns(tmp_path, capsys):
    text = SUITE.format(name="dup", label="ar-a", p=16) + '\n[[model]]\nname = "ar"\n' \
        'label = "ar-b"\np = 16\n'
    store = tmp_path / "s.sqlite"
    assert main([*RUN, str(suite_file(tmp_path, text=text)), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    t = table("suite dup\n" + out.split("\n\n", 1)[0].strip("\n"))
    assert list(t.columns) == ["metric", "(chance)", "chance", "ar-a", "ar-b"]
    assert (t["ar-a"] == t["ar-b"]).all() and t["ar-a"].iloc[0] != ""
    # the job ran once: one row per hash
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone()[0] == 8


def test_an_edited_suite_shows_only_its_current_configuration(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, p=2)
    run(tmp_path, store, p=16)  # same name and labels, another configuration of ar
    capsys.readouterr()
    assert main(["results", "--store", str(store)]) == 0
    t = table(capsys.readouterr().out)
    new = raw_scores(store, "model = 'ar' AND json_extract(model_params, '$.p') = 16 "
                     "AND json_extract(task_params, '$.lag') = 2")
    old = raw_scores(store, "model = 'ar' AND json_extract(model_params, '$.p') = 2 "
                     "AND json_extract(task_params, '$.lag') = 2")
    assert len(new) == len(old) == 2 and np.mean(new) != np.mean(old)  # both stay stored
    assert t.loc["jane-recall lag=2", "ar"] == f"{np.mean(new):.3f}"
    assert main(["report", "--store", str(store), "--no-plots", "--format", "csv",
                 "--out", str(tmp_path / "rep")]) == 0
    cells = pd.read_csv(tmp_path / "rep" / "cells.csv").set_index(["setting", "model_name"])
    ar = cells.loc[("jane-recall lag=2", "ar")]
    assert ar["n_jobs"] == 2 and ar["mean"] == pytest.approx(np.mean(new))
    runs_csv = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert not runs_csv.duplicated(["setting", "model_name", "seed"]).any()
    # compare reads the same cells: the store against itself is unchanged everywhere
    capsys.readouterr()
    assert main(["compare", str(store), str(tmp_path / "rep" / "runs.csv")]) == 0
    assert "unchanged within seed noise: 4" in capsys.readouterr().out


def test_the_report_shows_the_text_of_the_suites_latest_run(tmp_path):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, p=16)
    run(tmp_path, store, p=2)
    run(tmp_path, store, p=16)  # back to the first text: its stored row is the older one
    assert main(["report", "--store", str(store), "--no-plots", "--format", "html",
                 "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "p = 16" in html and "p = 2\n" not in html
    with Store(store, create=False) as s:
        assert "p = 16" in s.suite_text("tiny")


def test_columns_follow_the_suite_order_not_the_finish_order(tmp_path):
    """Jobs written in reverse order (as a parallel executor may finish them)."""
    text = SUITE.format(name="order", label="ar", p=16) + '\n[[model]]\nname = "chance"\n' \
        'label = "uniform"\nstrategy = "uniform"\n'
    suite = parse_suite(textwrap.dedent(text), "order.toml")
    jobs = suite.jobs()
    from seqbench.runner import run_job

    with Store(tmp_path / "s.sqlite") as store:
        store.write_suite(suite.name, suite.path, suite.text, "d", "2024-01-01", jobs=jobs)
        for job in reversed(jobs):
            store.write(run_job(job))
        df = store.frame("order")
    summary = report.summary_table(df)
    assert list(summary.columns) == ["metric", "(chance)", "chance", "ar", "uniform"]
    assert list(summary.index) == ["jane-recall lag=2", "jane-recall lag=6"]
    cells = report.cell_stats(df)
    wide = report.wide_tables(cells)["score"]
    assert list(wide.columns) == ["metric", "(chance)", "(best)", "chance", "ar", "uniform"]
    # a model missing from the first setting keeps its place
    late = report.summary_table(df[~((df["model_label"] == "ar")
                                     & (df["task_sweep"].map(lambda d: d["lag"]) == 2))])
    assert list(late.columns) == ["metric", "(chance)", "chance", "ar", "uniform"]


def test_a_store_without_job_lists_reads_by_the_suite_column(tmp_path, capsys):
    """A store written before suite_jobs existed: runs and suites tables only."""
    store = tmp_path / "s.sqlite"
    run(tmp_path, store)
    con = sqlite3.connect(store)
    con.execute("DROP TABLE suite_jobs")
    con.commit()
    con.close()
    before = digest(store)
    capsys.readouterr()
    assert main(["results", "--store", str(store)]) == 0
    t = table(capsys.readouterr().out)
    want = np.mean(raw_scores(store, "model = 'ar' AND json_extract(task_params, '$.lag') = 6"))
    assert t.loc["jane-recall lag=6", "ar"] == f"{want:.3f}"
    assert digest(store) == before  # read-only: no suite_jobs table created


# --------------------------------------------------------------------------------------
# Table metadata per setting, not from the first row
# --------------------------------------------------------------------------------------

def test_a_stopped_job_records_its_tasks_metric_direction_and_chance():
    text = SUITE.format(name="t", label="ar", p=16) + '\n[[task]]\nname = "adding"\nlength = 12\n'
    jobs = parse_suite(textwrap.dedent(text), "t.toml").jobs()
    jane = stopped_record(jobs[0], "timeout", "too slow", "2024-01-01T00:00:00", 1.0)
    assert (jane["metric"], jane["higher_is_better"]) == ("accuracy", True)
    assert jane["chance"] == pytest.approx(1 / 4)  # n_names = 4, uniform answers
    adding = stopped_record(jobs[-1], "failed", "worker died", "2024-01-01T00:00:00", 1.0)
    assert adding["task"] == "adding"
    assert (adding["metric"], adding["higher_is_better"]) == ("mse", False)
    assert adding["chance"] == pytest.approx(1 / 6)  # Var(U1 + U2) of two U(0, 1) draws
    # a task the driver cannot build still gives a record (without the metric)
    odd = stopped_record({**jobs[0], "task": "no-such-task"}, "timeout", "x", "t", 1.0)
    assert odd["status"] == "timeout" and odd.get("metric") is None


def _mse_rows(first_stopped: bool):
    rows = []
    for i, (model, seed, score) in enumerate([("chance", 0, 0.20), ("chance", 1, 0.18),
                                              ("ar", 0, 0.05), ("ar", 1, 0.07)]):
        rows.append({"hash": f"h{i}", "suite": "s", "task": "adding", "task_label": "adding",
                     "task_params": {"length": 12}, "task_sweep": {}, "model": model,
                     "model_label": model, "model_params": {}, "model_sweep": {},
                     "seed": seed, "status": "ok", "metric": "mse",
                     "higher_is_better": False, "score": score, "chance": 1 / 6,
                     "normalised": 1 - 6 * score})
    if first_stopped:  # an older store: the first row of the setting has no metric
        rows[0] = {**rows[0], "status": "timeout", "metric": None, "higher_is_better": None,
                   "score": None, "chance": None, "normalised": None}
    return rows


def test_tables_take_the_metric_of_a_setting_from_any_of_its_rows(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for r in _mse_rows(first_stopped=True):
            store.write(r)
        df = store.frame()
    summary = report.summary_table(df)
    assert summary.loc["adding", "metric"] == "mse ↓"
    assert summary.loc["adding", "(chance)"] == "0.167"
    cells = report.cell_stats(df).set_index("model_name")
    assert cells.loc["ar", "rank"] == 1 and cells.loc["chance", "rank"] == 2  # lower mse wins
    assert not cells.loc["chance", "higher_is_better"]
    assert report.wide_tables(report.cell_stats(df))["score"].loc["adding", "metric"] == "mse ↓"


# --------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------

def test_compare_refuses_a_store_of_several_suites_without_suite(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, name="one", p=16)
    run(tmp_path, store, name="two", p=2, file="two.toml")
    capsys.readouterr()
    assert main(["compare", str(store), str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds 2 suites (one, two); choose one with --suite" in err
    assert main(["compare", str(store), str(store), "--suite", "three"]) == 2
    assert "has no suite 'three'; it has: one, two" in capsys.readouterr().err
    assert main(["compare", str(store), str(store), "--suite", "two"]) == 0
    assert "unchanged within seed noise: 4" in capsys.readouterr().out


def test_compare_refuses_two_rows_for_one_seed(tmp_path, capsys):
    """A store of an older seqbench mixing two configurations of one label."""
    store = tmp_path / "s.sqlite"
    with Store(store) as s:
        for i, p in enumerate((2, 16)):
            for seed in (0, 1):
                s.write({"hash": f"h{p}-{seed}", "suite": "s", "task": "jane-recall",
                         "task_label": "jane", "task_params": {}, "task_sweep": {},
                         "model": "ar", "model_label": "ar", "model_params": {"p": p},
                         "model_sweep": {}, "seed": seed, "status": "ok", "metric": "accuracy",
                         "higher_is_better": True, "score": 0.3 + 0.5 * i + 0.01 * seed,
                         "chance": 0.25})
    assert main(["compare", str(store), str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "several rows for one (setting, model_name, seed): jane / ar seed 0 (2 rows)" in err


@pytest.mark.parametrize("kind, col, bad, message", [
    ("runs", "score", "abc", "column 'score': expected numbers, got 'abc'"),
    ("runs", "seed", "1.5", "column 'seed': expected whole numbers >= 0, got '1.5'"),
    ("cells", "mean", "x", "column 'mean': expected numbers, got 'x'"),
    ("cells", "n_ok", "-1", "column 'n_ok': expected whole numbers >= 0, got '-1'"),
])
def test_compare_csv_columns_must_be_numbers(tmp_path, capsys, kind, col, bad, message):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store)
    assert main(["report", "--store", str(store), "--no-plots", "--format", "csv",
                 "--out", str(tmp_path / "rep")]) == 0
    df = pd.read_csv(tmp_path / "rep" / f"{kind}.csv", dtype=str)
    df.loc[1, col] = bad
    broken = tmp_path / f"{kind}-broken.csv"
    df.to_csv(broken, index=False)
    capsys.readouterr()
    assert main(["compare", str(store), str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "(line 3)" in err


@pytest.mark.parametrize("alpha", ["-1", "0", "1", "5", "nan"])
def test_compare_alpha_must_be_a_level(tmp_path, capsys, alpha):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store)
    capsys.readouterr()
    assert main(["compare", str(store), str(store), "--alpha", alpha]) == 2
    assert "--alpha: expected a significance level in (0, 1)" in capsys.readouterr().err


def test_compare_pairs_the_shared_seeds_when_the_seed_sets_differ():
    a_scores = {0: 0.50, 1: 0.62, 2: 0.55}
    b_scores = {0: 0.58, 1: 0.69, 2: 0.64, 3: 0.10}  # seed 3 only in B

    def frame(scores):
        return pd.DataFrame({"setting": "jane", "model_name": "ar", "metric": "accuracy",
                             "higher_is_better": True, "seed": list(scores),
                             "score": list(scores.values())})

    c = report.compare(frame(a_scores), frame(b_scores)).iloc[0]
    d = np.array([b_scores[s] - a_scores[s] for s in (0, 1, 2)])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))  # paired t over the 3 shared seeds
    assert c["test"] == "paired" and c["n_paired"] == 3
    assert c["pvalue"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    # the all-seed means would say B got worse; the paired test on shared seeds says better,
    # and the means and difference shown are those of the shared seeds it tested
    assert c["mean_b_all"] < c["mean_a_all"] and c["verdict"] == "better"
    assert c["diff"] == pytest.approx(d.mean()) and c["diff"] > 0
    assert c["mean_a"] == pytest.approx(np.mean([a_scores[s] for s in (0, 1, 2)]))
    assert c["mean_b"] == pytest.approx(np.mean([b_scores[s] for s in (0, 1, 2)]))
    assert "paired on 3 shared seeds" in report.compare_text(report.compare(
        frame(a_scores), frame(b_scores)))
    # one shared seed: nothing to pair, Welch's test on every seed
    w = report.compare(frame({0: 0.5, 1: 0.6}), frame({1: 0.7, 2: 0.8})).iloc[0]
    assert w["test"] == "welch" and w["n_paired"] == 0


# --------------------------------------------------------------------------------------
# Read-only commands; results and report input errors
# --------------------------------------------------------------------------------------

def _foreign(path, runs_table: bool):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (id INTEGER, name TEXT)" if runs_table
                else "CREATE TABLE foo (x)")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("what", ["foreign", "foreign-runs", "empty"])
def test_read_only_commands_never_write_and_refuse_a_foreign_file(tmp_path, capsys, what):
    path = tmp_path / "x.db"
    if what == "empty":
        path.write_bytes(b"")
    else:
        _foreign(path, runs_table=what == "foreign-runs")
    before = digest(path)
    good = tmp_path / "good.sqlite"
    run(tmp_path, good)
    good_before = digest(good)
    capsys.readouterr()
    for argv in (["results", "--store", str(path)], ["results", "--store", str(path), "--errors"],
                 ["report", "--store", str(path), "--out", str(tmp_path / "r")],
                 ["compare", str(path), str(good)], ["compare", str(good), str(path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not a seqbench store" in err, err
    assert digest(path) == before and digest(good) == good_before
    assert sqlite3.connect(good).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'suite_jobs'").fetchone()[0] == 1


def test_results_unknown_suite_and_errors_on_no_jobs(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store)
    capsys.readouterr()
    assert main(["results", "--store", str(store), "--suite", "typo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"seqbench: error: results: store {store} has no suite 'typo'; it has: tiny"
    assert main(["results", "--store", str(store), "--suite", "typo", "--errors"]) == 2
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()  # a store with no jobs at all
    capsys.readouterr()
    assert main(["results", "--store", str(empty), "--errors"]) == 0
    out = capsys.readouterr().out
    assert "every job finished ok" not in out and "(no results)" in out
    assert main(["results", "--store", str(store), "--errors"]) == 0
    assert capsys.readouterr().out.strip() == "every job finished ok (8 jobs)"


def test_report_out_and_format_errors_are_one_line(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store)
    blocker = tmp_path / "file"
    blocker.write_text("")
    capsys.readouterr()
    for out in (blocker / "sub", "/proc/seqbench-report"):
        assert main(["report", "--store", str(store), "--out", str(out), "--no-plots"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"report: --out {out}: cannot write there" in err, err
    for fmt in ("", " , "):
        assert main(["report", "--store", str(store), "--format", fmt,
                     "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert "--format: expected one or more of md, csv, tex, html" in err
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("job_list", [True, False])
def test_frame_reads_the_columns_asked_for_with_the_values_of_the_whole_row(tmp_path, job_list):
    """frame(columns=...) equals the whole frame's columns (in the store's column order,
    the job list's labels); as_text leaves JSON columns as the text they decode from."""
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, label="ar-renamed")
    if not job_list:  # a store written before suite_jobs existed
        con = sqlite3.connect(store)
        con.execute("DROP TABLE suite_jobs")
        con.commit()
        con.close()
    extra = ["position", "task_order", "model_order"] if job_list else []
    with Store(store, create=False) as s:
        for suite in ("tiny", None):
            full = s.frame(suite)
            some = s.frame(suite, columns=["slices", "score", "model_label", "seed"])
            assert list(some) == ["model_label", "seed", "score", "slices", *extra]
            pd.testing.assert_frame_equal(some, full[list(some)])
            assert set(some["model_label"]) == {"chance", "ar-renamed"}
            text = s.frame(suite, as_text=("slices", "curve"))
            pd.testing.assert_frame_equal(text.drop(columns=["slices", "curve"]),
                                          full.drop(columns=["slices", "curve"]))
            for col in ("slices", "curve"):
                assert all(isinstance(t, str) for t in text[col])
                assert [json.loads(t) for t in text[col]] == list(full[col])
                assert [json_value(t) for t in text[col]] == list(full[col])
        with pytest.raises(ValueError, match=r"columns: unknown columns \['scroe'\]"):
            s.frame("tiny", columns=["score", "scroe"])
        with pytest.raises(ValueError, match=r"as_text: unknown columns \['score'\]"):
            s.frame("tiny", as_text=("score",))
        with pytest.raises(ValueError, match=r"columns: expected at least one column name"):
            s.frame("tiny", columns=[])


def test_store_json_columns_round_trip(tmp_path):
    """What a record writes is what frame() reads (JSON columns decoded)."""
    rec = {"hash": "h", "suite": "s", "task": "jane-recall", "task_label": "jane",
           "task_params": {"lag": 3}, "task_sweep": {"lag": 3}, "model": "ar",
           "model_label": "ar", "model_params": {"p": (1, 2)}, "model_sweep": {},
           "seed": 0, "status": "ok", "metrics": {"accuracy": np.float64(0.5)},
           "score": 0.5}
    with Store(tmp_path / "s.sqlite") as store:
        store.write(rec)
        row = store.frame("s").iloc[0]
    assert row["model_params"] == {"p": [1, 2]} and row["metrics"] == {"accuracy": 0.5}
    assert json.dumps(row["task_sweep"]) == '{"lag": 3}'


def test_a_store_locked_by_another_process_is_one_line_and_keeps_what_finished(
        tmp_path, capsys, monkeypatch):
    from seqbench import store as store_module

    path = tmp_path / "s.sqlite"
    run(tmp_path, path)  # 8 jobs finished
    before = raw_scores(path, "1")
    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)  # a reader inside a transaction
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM runs").fetchall()
    try:
        capsys.readouterr()
        code = main([*RUN, str(suite_file(tmp_path, p=8)), "--store", str(path)])
        err = capsys.readouterr().err
    finally:
        holder.close()
    assert code == 2
    assert err.count("\n") == 1
    assert re.match(rf"seqbench: error: store {re.escape(str(path))}: locked by another "
                    r"process for 0\.2 s .*run again when it is free$", err.strip())
    assert raw_scores(path, "1") == before  # nothing half-written, nothing lost
    run(tmp_path, path, p=8)  # free again: the edited suite runs
    assert len(raw_scores(path, "1")) == 12


def test_compare_lists_cells_whose_jobs_failed_as_not_ok_with_their_statuses(tmp_path, capsys):
    """B ran the same suite, but ar timed out on both seeds at lag 2 and failed on seed 0
    at lag 6: the first cell is 'not ok in B' (not a cell B lacks), the second is tested
    on the seed B has, with the failure counted beside it."""
    import shutil

    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    run(tmp_path, a)
    shutil.copy(a, b)
    con = sqlite3.connect(b)
    with con:
        con.execute("UPDATE runs SET status = 'timeout', score = NULL WHERE model = 'ar' "
                    "AND json_extract(task_params, '$.lag') = 2")
        con.execute("UPDATE runs SET status = 'failed', score = NULL WHERE model = 'ar' "
                    "AND json_extract(task_params, '$.lag') = 6 AND seed = 0")
    con.close()
    capsys.readouterr()
    out_csv = tmp_path / "cmp.csv"
    assert main(["compare", str(a), str(b), "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "not ok in B (no score: its jobs did not finish ok) (1):\n" \
           "  ar on jane-recall lag=2 (B: 2 timeout)" in out
    assert "only in A (0):" in out
    assert "scored, with jobs not ok (their seeds left out) (1):\n" \
           "  ar on jane-recall lag=6 (B: 1 failed)" in out
    cmp = pd.read_csv(out_csv, keep_default_na=False).set_index(["setting", "model_name"])
    assert cmp.loc[("jane-recall lag=2", "ar"), "verdict"] == "not ok in B"
    lag6 = cmp.loc[("jane-recall lag=6", "ar")]
    assert lag6["n_a"] == 2 and lag6["n_b"] == 1 and lag6["not_ok_b"] == "1 failed"
    assert lag6["not_ok_a"] == ""


def test_compare_takes_another_suite_from_b_and_checks_out_first(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    run(tmp_path, store, name="one", p=16)
    run(tmp_path, store, name="two", p=2, file="two.toml")
    capsys.readouterr()
    assert main(["compare", str(store), str(store), "--suite", "one", "--suite-b", "two"]) == 0
    out = capsys.readouterr().out
    ar = {float(x) for x in raw_scores(store, "model = 'ar'")}
    assert len(ar) > 1 and "ar on jane-recall" in out  # p=16 vs p=2 differ
    for bad, message in ((str(tmp_path), "expected a file path, got a directory"),
                         ("", "expected a file path, got ''"),
                         (str(tmp_path / "no" / "c.csv"), "no such directory")):
        assert main(["compare", str(store), str(store), "--suite", "one", "--out", bad]) == 2
        got = capsys.readouterr()
        assert got.out == "" and message in got.err and got.err.count("\n") == 1
    assert main(["compare", str(tmp_path), str(store)]) == 2
    assert "a directory (expected a store or a CSV, such as" in capsys.readouterr().err


def _tree(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_a_report_replaces_what_the_previous_one_wrote_and_nothing_else(tmp_path, capsys):
    store, out = tmp_path / "s.sqlite", tmp_path / "rep"
    run(tmp_path, store, name="one")
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a user's file in the report folder
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    first = _tree(out)
    assert {"report.md", "report.html", "cells.csv", "figures"} <= first
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots",
                 "--format", "md"]) == 0
    assert _tree(out) == {"notes.txt", "report.md", ".seqbench-report"}
    assert (out / "notes.txt").read_text() == "mine"
    # a second suite: one folder per suite, and the single-suite files at the top go
    run(tmp_path, store, name="two", p=2, file="two.toml")
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots",
                 "--format", "md,csv"]) == 0
    assert _tree(out) == {"notes.txt", ".seqbench-report", "one", "two",
                          *(f"{s}/{f}" for s in ("one", "two")
                            for f in ("report.md", "cells.csv", "runs.csv", "horizons.csv",
                                      ".seqbench-report"))}
    # a file where the second suite's folder goes: refused before anything is written
    before = _tree(out)
    (out / "two").rename(tmp_path / "two-moved")
    (out / "two").write_text("a file")
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots",
                 "--format", "md"]) == 2
    assert f"--out {out / 'two'}: expected a directory, got a file" in capsys.readouterr().err
    assert _tree(out) == before - {f"two/{f}" for f in ("report.md", "cells.csv", "runs.csv",
                                                        "horizons.csv", ".seqbench-report")}
    (out / "two").unlink()
    (tmp_path / "two-moved").rename(out / "two")
    # back to one suite: the per-suite folders go
    assert main(["report", "--store", str(store), "--suite", "one", "--out", str(out),
                 "--no-plots", "--format", "md"]) == 0
    assert _tree(out) == {"notes.txt", "report.md", ".seqbench-report"}
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("blocked", ["figures", "report.html"])
def test_a_report_that_cannot_be_written_whole_leaves_the_folder_as_it_was(
        tmp_path, capsys, blocked):
    store, out = tmp_path / "s.sqlite", tmp_path / "rep"
    run(tmp_path, store)
    out.mkdir()
    if blocked == "figures":
        (out / "figures").write_text("a file where the figures go")
    else:
        (out / "report.html").mkdir()
    before = _tree(out)
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"report: --out {out}: cannot write there" in err
    assert _tree(out) == before
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
