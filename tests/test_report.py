"""Reports and comparisons on a small store built by hand (no model training).

Expected numbers are computed here from the definitions: Student t intervals with the
tabulated quantile t_{0.975, 2} = 4.302652729911275, the memory horizon's linear
interpolation, the Friedman statistic from its rank-sum formula, Welch's and the paired
t statistic from their formulas.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqbench import report
from seqbench.cli import main
from seqbench.store import Store

T975_2 = 4.302652729911275  # Student t quantile, 0.975, 2 degrees of freedom (tables)
LAGS = (2, 5, 10)
SEEDS = (0, 1, 2)
CHANCE = 0.1
# normalised accuracy per model, lag and seed (seeds 0, 1, 2)
NORM = {
    "alpha": {2: [0.95, 0.93, 0.97], 5: [0.9, 0.92, 0.88], 10: [0.8, 0.85, 0.75]},
    "beta": {2: [0.98, 0.96, 0.99], 5: [0.6, 0.4, 0.55], 10: [0.2, 0.1, 0.45]},
    "gamma": {2: [0.1, 0.0, 0.05], 5: [0.02, 0.04, 0.0], 10: [0.0, 0.01, 0.03]},
}
# mse on a lower-is-better task (chance 1/6, perfect 0)
MSE = {"alpha": [0.01, 0.02, 0.03], "beta": [0.05, 0.06, 0.04], "gamma": [0.16, 0.17, 0.15]}
DIAG = {"alpha": {"grad_decay": {"k": [1, 2, 3], "init": [1.0, 0.5, 0.25],
                                 "trained": [1.0, 0.9, 0.8]}},
        "beta": {"state_decay": {"k": [0, 1, 2, 3], "norm_A_k": [1.0, 0.9, 0.81, 0.729]}},
        "gamma": {"state_forgetting": {"k": [1, 2, 3], "tv": [0.5, 0.25, 0.125]}}}


def _row(i, task, label, params, sweep, model, seed, metric, hib, score, chance, oracle,
         status="ok", suite="hand"):
    norm = (score - chance) / (oracle - chance) if status == "ok" else None
    return {
        "hash": f"h{i}", "suite": suite, "task": task, "task_label": label, "task_version": 1,
        "task_params": params, "task_sweep": sweep, "model": model, "model_label": model,
        "model_version": 1, "model_params": {}, "model_sweep": {}, "seed": seed,
        "data": {"n_train": 10}, "status": status, "metric": metric, "higher_is_better": hib,
        "score": score if status == "ok" else None, "chance": chance, "oracle": oracle,
        "normalised": norm, "metrics": {metric: score}, "slices": {},
        "curve": [{"step": s, "train_loss": 2.0 / (s + 1), "valid_loss": 2.1 / (s + 1)}
                  for s in (0, 10, 20)],
        "diagnostics": DIAG[model], "n_params": 100, "wall_s": 1.0, "cpu_s": 1.0,
        "device": "cpu (test)", "provenance": {"python": "3.x", "git_commit": "abc"},
        "error": "boom" if status != "ok" else None,
    }


def hand_rows(norm=NORM, mse=MSE, seeds=SEEDS, suite="hand"):
    rows, i = [], 0
    for model, by_lag in norm.items():
        for lag in LAGS:
            for seed, n in zip(seeds, by_lag[lag]):
                rows.append(_row(i, "jane-recall", "jane", {"lag": lag, "n_names": 10},
                                 {"lag": lag}, model, seed, "accuracy", True,
                                 CHANCE + (1 - CHANCE) * n, CHANCE, 1.0, suite=suite))
                i += 1
        for seed, v in zip(seeds, mse[model]):
            rows.append(_row(i, "adding", "adding", {"length": 20}, {}, model, seed, "mse",
                             False, v, 1 / 6, 0.0, suite=suite))
            i += 1
    # one more job that failed: it counts in n_jobs, not in the statistics
    rows.append(_row(i, "adding", "adding", {"length": 20}, {}, "gamma", 99, "mse", False,
                     None, 1 / 6, 0.0, status="failed", suite=suite))
    return rows


SUITE_TEXT = '[suite]\nname = "hand"\n# a hand-written suite for the report test\n'


def make_store(path, rows=None, suite="hand"):
    with Store(path) as store:
        for r in rows if rows is not None else hand_rows(suite=suite):
            store.write(r)
        store.write_suite(suite, "hand.toml", SUITE_TEXT, f"digest-{suite}", "2024-01-01")
    return path


@pytest.fixture
def store_path(tmp_path):
    return make_store(tmp_path / "hand.sqlite")


@pytest.fixture
def frame(store_path):
    with Store(store_path, create=False) as store:
        return store.frame()


def test_cell_means_intervals_normalised_and_ranks(frame):
    cells = report.cell_stats(frame).set_index(["setting", "model_name"])
    c = cells.loc[("jane lag=5", "beta")]
    scores = CHANCE + (1 - CHANCE) * np.array(NORM["beta"][5])
    assert c["mean"] == pytest.approx(0.565)  # 0.1 + 0.9 * mean(0.6, 0.4, 0.55)
    half = T975_2 * np.std(scores, ddof=1) / math.sqrt(3)
    assert c["ci"] == pytest.approx(half, rel=1e-9)
    assert c["ci"] == pytest.approx(0.2327, abs=1e-4)
    assert c["norm_mean"] == pytest.approx(np.mean(NORM["beta"][5]))
    assert c["norm_ci"] == pytest.approx(T975_2 * np.std(NORM["beta"][5], ddof=1) / math.sqrt(3))
    # lower-is-better task: the smallest mse ranks first; the failed job is counted apart
    add = cells.loc["adding"]
    assert add.loc["alpha", "rank"] == 1 and add.loc["beta", "rank"] == 2
    assert add.loc["gamma", "rank"] == 3
    assert add.loc["gamma", "n_jobs"] == 4 and add.loc["gamma", "n_ok"] == 3
    assert add.loc["gamma", "status"] == "failed"
    assert add.loc["alpha", "norm_mean"] == pytest.approx(1 - 0.02 * 6)  # (0.02-1/6)/(0-1/6)
    # at lag 2 beta beats alpha
    assert cells.loc[("jane lag=2", "beta"), "rank"] == 1
    assert cells.loc[("jane lag=2", "alpha"), "rank"] == 2
    tables = report.wide_tables(report.cell_stats(frame))
    assert tables["score"].loc["jane lag=5", "beta"] == f"0.565 ± {half:.3f}"
    assert tables["score"].loc["adding", "gamma"].endswith("(1 failed)")


def test_one_seed_has_no_interval():
    mean, half, sd = report.t_interval([0.3])
    assert mean == 0.3 and math.isnan(half) and math.isnan(sd)
    assert report._fmt_ci(mean, half) == "0.300"


def test_crossing_definition():
    assert report.crossing([2, 5, 10], [0.9, 0.6, 0.2]) == (pytest.approx(6.25), "=")
    assert report.crossing([2, 5, 10], [0.9, 0.8, 0.7]) == (10.0, ">=")
    assert report.crossing([2, 5, 10], [0.4, 0.8, 0.7]) == (2.0, "<")
    # the first downward crossing counts, even if the score recovers later
    assert report.crossing([1, 3, 5], [0.8, 0.3, 0.9]) == (pytest.approx(1 + 0.3 / 0.5 * 2), "=")
    # order of the points does not matter; NaN points are dropped
    assert report.crossing([10, 2, 5, 7], [0.2, 0.9, 0.6, float("nan")])[0] == pytest.approx(6.25)


def test_memory_horizon_against_hand_interpolation(frame):
    hz = report.memory_horizons(frame).set_index("model_name")
    per_seed = [5 + (0.6 - 0.5) / (0.6 - 0.2) * 5,      # seed 0: between lag 5 and 10
                2 + (0.96 - 0.5) / (0.96 - 0.4) * 3,    # seed 1: between lag 2 and 5
                5 + (0.55 - 0.5) / (0.55 - 0.45) * 5]   # seed 2: between lag 5 and 10
    b = hz.loc["beta"]
    assert b["family"] == "jane" and b["dep"] == "lag"
    assert b["per_seed"] == pytest.approx(per_seed)
    assert b["horizon"] == pytest.approx(np.mean(per_seed))
    assert b["ci"] == pytest.approx(T975_2 * np.std(per_seed, ddof=1) / math.sqrt(3))
    assert hz.loc["alpha", "display"] == "≥ 10" and hz.loc["alpha", "n_right"] == 3
    assert hz.loc["gamma", "display"] == "< 2" and hz.loc["gamma", "n_left"] == 3
    # the adding task is not lag-swept: no horizon for it
    assert set(hz["family"]) == {"jane"}


def test_horizon_from_per_lag_slices():
    rows = []
    for seed, accs in enumerate(([1.0, 0.7, 0.3], [1.0, 0.5, 0.2])):
        r = _row(seed, "jane-recall", "jane", {"lag": 3, "lag_max": 9}, {}, "alpha", seed,
                 "accuracy", True, 0.6, CHANCE, 1.0)
        r["slices"] = {"lag": {"3": {"accuracy": accs[0]}, "6": {"accuracy": accs[1]},
                               "9": {"accuracy": accs[2]}}}
        rows.append(r)
    df = pd.DataFrame(rows)
    hz = report.memory_horizons(df)
    assert len(hz) == 1 and hz["dep"].iloc[0] == "lag"
    n0 = [(a - CHANCE) / 0.9 for a in (1.0, 0.7, 0.3)]
    n1 = [(a - CHANCE) / 0.9 for a in (1.0, 0.5, 0.2)]
    h0 = 6 + (n0[1] - 0.5) / (n0[1] - n0[2]) * 3
    h1 = 3 + (n1[0] - 0.5) / (n1[0] - n1[1]) * 3
    assert hz["per_seed"].iloc[0] == pytest.approx([h0, h1])


def _points_rows():
    """Jobs for lag_points: a swept lag (two jobs, last in the frame), per-lag slices
    (one lag without the metric, a NaN score), a setting whose oracle is its chance, and
    jobs that give no point (failed, one lag, no lag slice)."""
    def job(i, label, model, seed, slices, status="ok", sweep=None):
        r = _row(100 + i, "jane-recall", label, {"lag": 3, "lag_max": 9}, sweep or {}, model,
                 seed, "accuracy", True, 0.6, CHANCE, 1.0, status=status)
        r["slices"] = slices
        return r

    lag = {"3": {"accuracy": 1.0}, "6": {"accuracy": 0.55, "n_scored": 4},
           "9": {"n_scored": 2}}
    rows = [job(0, "jr", "alpha", 0, {"lag": lag, "first": {"Jane": {"accuracy": 0.5}}}),
            job(1, "jr", "beta", 1, {"lag": {"4": {"accuracy": 0.1},
                                             "8": {"accuracy": float("nan")}}}),
            job(2, "flat", "alpha", 0, {"lag": {"1": {"accuracy": 0.5},
                                                "2": {"accuracy": 0.7}}}),
            job(3, "jr", "gamma", 0, {"lag": lag}, status="failed"),
            job(4, "jr", "gamma", 1, {"lag": {"3": {"accuracy": 0.9}}}),
            job(5, "jr", "gamma", 2, {"first": {"Jane": {"accuracy": 0.5}}}),
            job(6, "jane", "alpha", 0, {"lag": lag}, sweep={"lag": 2}),
            job(7, "jane", "alpha", 0, {"lag": lag}, sweep={"lag": 5})]
    rows[2]["chance"] = rows[2]["oracle"] = 0.5  # best = chance: nothing to normalise by
    rows[6]["score"], rows[6]["normalised"] = 0.9, 8 / 9
    return rows


def test_lag_points_of_swept_and_sliced_jobs_by_hand():
    def point(family, model, seed, lag, score, normalised, chance=CHANCE, best=1.0):
        return {"family": family, "dep": "lag", "model_name": model, "seed": seed,
                "lag": lag, "score": score, "normalised": normalised, "chance": chance,
                "best": best, "metric": "accuracy", "higher_is_better": True}

    nan = float("nan")
    want = pd.DataFrame([
        point("jane", "alpha", 0, 2.0, 0.9, 8 / 9),  # the swept parameter first
        point("jane", "alpha", 0, 5.0, 0.6, (0.6 - CHANCE) / 0.9),
        point("jr (per lag)", "alpha", 0, 3.0, 1.0, (1.0 - CHANCE) / 0.9),
        point("jr (per lag)", "alpha", 0, 6.0, 0.55, (0.55 - CHANCE) / 0.9),
        point("jr (per lag)", "beta", 1, 4.0, 0.1, 0.0),
        point("jr (per lag)", "beta", 1, 8.0, nan, nan),
        point("flat (per lag)", "alpha", 0, 1.0, 0.5, nan, chance=0.5, best=0.5),
        point("flat (per lag)", "alpha", 0, 2.0, 0.7, nan, chance=0.5, best=0.5),
    ])
    rows = _points_rows()
    got = report.lag_points(pd.DataFrame(rows))
    pd.testing.assert_frame_equal(got, want, rtol=0, atol=1e-15)
    # the slices as the store keeps them, JSON text decoded row by row: the same points
    for r in rows:
        r["slices"] = json.dumps(r["slices"])
    pd.testing.assert_frame_equal(report.lag_points(pd.DataFrame(rows)), got, check_exact=True)
    # no job with a lag: no points, the columns named
    assert list(report.lag_points(pd.DataFrame(rows[3:6]))) == list(want)


def test_a_report_from_points_and_rows_without_slices_is_the_same_report(tmp_path):
    rows = _points_rows() + hand_rows()[:12]
    path = make_store(tmp_path / "s.sqlite", rows)
    with Store(path, create=False) as store:
        full, plan = store.frame("hand"), report.suite_plan(store, "hand")
        df, plan_too, points = report.report_inputs(store, "hand")
    assert "slices" not in df and len(df) == len(full) == len(rows)
    pd.testing.assert_frame_equal(df, full.drop(columns=["slices"]))
    assert (plan is None) == (plan_too is None)
    pd.testing.assert_frame_equal(points, report.lag_points(full, plan), check_exact=True)
    assert len(points) == 8 + 9  # and alpha's 9 jobs at lags 2, 5 and 10
    text, files = report.write_report(full, tmp_path / "a", suite="hand", plots=False)
    text_too, _ = report.write_report(df, tmp_path / "b", suite="hand", plots=False,
                                      points=points)
    assert text_too == text
    for f in files:
        if f.name != "report.html":  # the time it was written differs
            assert (tmp_path / "b" / f.name).read_text() == f.read_text(), f.name


def test_t_interval_leaves_out_missing_and_non_finite_values():
    assert report.t_interval([0.2, None, float("nan"), 0.4, float("inf"), 0.9]) \
        == report.t_interval([0.2, 0.4, 0.9])
    mean, half, sd = report.t_interval(pd.Series([0.2, 0.4, 0.9]))
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3), rel=1e-15)


def test_friedman_against_rank_sum_formula_and_scipy(frame):
    fr = report.friedman_nemenyi(report.cell_stats(frame))
    # 4 blocks (3 lags + adding), 3 models; ranks alpha 2,1,1,1  beta 1,2,2,2  gamma 3,3,3,3
    N, k = 4, 3
    R = np.array([5.0, 7.0, 12.0])
    chi2 = 12 / (N * k * (k + 1)) * np.sum(R**2) - 3 * N * (k + 1)  # = 6.5
    assert fr["statistic"] == pytest.approx(chi2) and chi2 == pytest.approx(6.5)
    assert fr["pvalue"] == pytest.approx(math.exp(-chi2 / 2))  # chi2 survival, 2 dof
    m = fr["matrix"]
    assert fr["statistic"] == pytest.approx(
        stats.friedmanchisquare(m["alpha"], m["beta"], m["gamma"]).statistic)
    assert fr["mean_ranks"].to_dict() == pytest.approx({"alpha": 1.25, "beta": 1.75,
                                                        "gamma": 3.0})
    assert fr["nemenyi"].shape == (3, 3) and fr["skipped"] is None


def test_friedman_skips_with_two_models(frame):
    fr = report.friedman_nemenyi(report.cell_stats(frame[frame["model"] != "gamma"]))
    assert fr["skipped"].startswith("needs at least 3 models")


def test_friedman_skips_when_every_setting_ties_every_model(frame):
    tied = frame.copy()  # every model gets the first model's score, setting by setting
    key = tied["task_label"] + tied["task_params"].map(str) + tied["seed"].map(str)
    tied["score"] = tied.groupby(key)["score"].transform("first")
    fr = report.friedman_nemenyi(report.cell_stats(tied))
    assert fr["skipped"] == ("no differences to test: the 3 models tie on every one of "
                             "the 4 task settings")
    assert np.isnan(fr["statistic"]) and fr["nemenyi"] is None


def test_equal_means_summed_in_another_order_tie_in_the_ranks(frame):
    """Scores 0.27, 0.31, 0.04 and 0.04, 0.27, 0.31: the same mean, as floats summed in
    another order 0.2066666666666667 and 0.20666666666666667; they tie (rank 1.5 each)."""
    sub = frame[(frame["model"] != "gamma") & (frame["task"] == "jane-recall")].copy()
    lag2 = sub["task_params"].map(lambda p: p["lag"] == 2)
    for model, scores in (("alpha", [0.27, 0.31, 0.04]), ("beta", [0.04, 0.27, 0.31])):
        rows = sub.index[lag2 & (sub["model"] == model)]
        sub.loc[rows, "score"] = [scores[int(s)] for s in sub.loc[rows, "seed"]]
    cells = report.cell_stats(sub).set_index(["setting", "model_name"])
    a, b = cells.loc[("jane lag=2", "alpha")], cells.loc[("jane lag=2", "beta")]
    assert a["mean"] != b["mean"]  # the float sums differ in the last digit
    assert a["rank"] == b["rank"] == 1.5


def _shifted(norm_delta, mse_delta, seeds=SEEDS):
    norm = {m: {lag: list(v) for lag, v in d.items()} for m, d in NORM.items()}
    mse = {m: list(v) for m, v in MSE.items()}
    for (model, lag), delta in norm_delta.items():
        norm[model][lag] = [a + b for a, b in zip(norm[model][lag], delta)]
    for model, delta in mse_delta.items():
        mse[model] = [a + b for a, b in zip(mse[model], delta)]
    return hand_rows(norm, mse, seeds)


def test_compare_paired_verdicts(tmp_path, store_path, capsys):
    b_path = make_store(tmp_path / "b.sqlite", _shifted(
        {("beta", 10): [-0.1, -0.12, -0.09]}, {"alpha": [-0.010, -0.012, -0.009]}))
    a, b = report.load_results(store_path), report.load_results(b_path)
    cmp = report.compare(a, b).set_index(["setting", "model_name"])
    worse = cmp.loc[("jane lag=10", "beta")]
    d = -0.9 * np.array([0.1, 0.12, 0.09])  # accuracy differences B - A per seed
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert worse["test"] == "paired" and worse["verdict"] == "worse"
    assert worse["diff"] == pytest.approx(d.mean())
    assert worse["pvalue"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    better = cmp.loc[("adding", "alpha")]
    assert better["verdict"] == "better" and better["diff"] == pytest.approx(-0.031 / 3)
    rest = cmp.drop([("jane lag=10", "beta"), ("adding", "alpha")])
    assert set(rest["verdict"]) == {"same"} and (rest["pvalue"] == 1).all()
    assert main(["compare", str(store_path), str(b_path)]) == 0
    out = capsys.readouterr().out
    better_part = out.split("better in B (1):")[1].split("worse in B")[0]
    assert "alpha on adding" in better_part
    assert "beta on jane lag=10" in out.split("worse in B (1):")[1]
    n_same = len(rest)
    assert main(["compare", str(store_path), str(b_path), "--changed"]) == 0
    changed = capsys.readouterr().out
    table = changed.split("\n\n")[1].splitlines()  # the header, then one line per cell
    assert len(table) == 3 and all(" same" not in line for line in table)
    assert changed.split("\n\n", 2)[2] == out.split("\n\n", 2)[2]  # lists and counts
    assert f"unchanged within seed noise: {n_same};" in changed
    assert main(["compare", str(store_path), str(store_path), "--changed"]) == 0
    assert "(every cell unchanged within seed noise)" in capsys.readouterr().out


def test_compare_welch_on_other_seeds(tmp_path, store_path):
    b_path = make_store(tmp_path / "b.sqlite", _shifted({}, {"gamma": [0.05, 0.06, 0.07]},
                                                        seeds=(10, 11, 12)))
    cmp = report.compare(report.load_results(store_path), report.load_results(b_path))
    c = cmp.set_index(["setting", "model_name"]).loc[("adding", "gamma")]
    xa, xb = np.array(MSE["gamma"]), np.array(MSE["gamma"]) + [0.05, 0.06, 0.07]
    va, vb = xa.var(ddof=1) / 3, xb.var(ddof=1) / 3
    t = (xb.mean() - xa.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)  # Welch-Satterthwaite
    assert c["test"] == "welch"
    assert c["pvalue"] == pytest.approx(2 * stats.t.sf(abs(t), dof))
    assert c["verdict"] == "worse"


def test_report_writes_every_file_and_compare_reads_its_csv(tmp_path, store_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--store", str(store_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.index("memory horizon") < text.index("score (mean")  # the headline first
    assert "≥ 10" in text and "Friedman chi2 = 6.500" in text
    for name in ("report.md", "tables.tex", "cells.csv", "runs.csv", "horizons.csv",
                 "report.html", "score.html"):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted((out / "figures").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"lag-jane", "critical-difference", "curve-adding", "decay-adding"} <= names
    import matplotlib.image as mpimg

    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
        svg = p.with_suffix(".svg").read_text()
        assert "<svg" in svg
    tex = (out / "tables.tex").read_text()
    assert r"\begin{tabular}" in tex and r"0.565 $\pm$ 0.233" in tex
    md = (out / "report.md").read_text()
    assert "| jane lag=5 |" in md and "0.565 ± 0.233" in md
    assert "| device | cpu (test) (37) |" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "a hand-written suite for the report test" in html  # the suite file
    assert "abc (" in html  # provenance: git commit with its job count
    assert not re.search(r"(src|href)=\"https?:", html)  # nothing loaded from elsewhere
    # the CSVs compare like the store itself
    cmp_csv = report.compare(report.load_results(out / "runs.csv"),
                             report.load_results(store_path))
    assert set(cmp_csv["verdict"]) == {"same"} and (cmp_csv["test"] == "paired").all()
    cmp_cells = report.compare(report.load_results(out / "cells.csv"),
                               report.load_results(store_path))
    assert set(cmp_cells["verdict"]) == {"same"} and (cmp_cells["test"] == "welch").all()


def test_report_errors_are_one_line(tmp_path, store_path, capsys):
    assert main(["report", "--store", str(store_path), "--suite", "nope",
                 "--out", str(tmp_path / "r")]) == 2
    assert "has no suite 'nope'; it has: hand" in capsys.readouterr().err
    assert main(["report", "--store", str(store_path), "--format", "md,docx",
                 "--out", str(tmp_path / "r")]) == 2
    assert "unknown format 'docx'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["compare", str(store_path), str(bad)]) == 2
    assert "expected a runs.csv or cells.csv" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not on PATH "
                    "(.ci/run and the nox session install it)")
def test_html_report_renders_in_headless_chromium(tmp_path, store_path):
    out = tmp_path / "rep"
    assert main(["report", "--store", str(store_path), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    n_img = page.count("<img ")
    # a probe appended to a copy: after load, write each image's decoded width into the DOM
    probe = ("<script>window.addEventListener('load', function () {"
             "var w = Array.from(document.images).map(function (i) { return i.naturalWidth; });"
             "var p = document.createElement('p'); p.id = 'probe';"
             "p.textContent = 'widths:' + w.join(',') + ';tables:' + "
             "document.querySelectorAll('table.seqbench').length;"
             "document.body.appendChild(p); });</script>")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", probe + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    m = re.search(r'id="probe">widths:([0-9,]*);tables:(\d+)<', dom)
    assert m, dom[-2000:]
    widths = [int(w) for w in m.group(1).split(",") if w]
    assert len(widths) == n_img and n_img >= 4
    assert all(w > 0 for w in widths)  # every embedded image decoded
    assert int(m.group(2)) >= 4  # horizons, scores, normalised, ranks (and provenance)
    assert 'id="horizons"' in dom and "0.565 ± 0.233" in dom


# --------------------------------------------------------------------------------------
# What compare prints agrees with what it tested; incomplete suites say so; no warnings
# --------------------------------------------------------------------------------------

def _runs_csv(path, scores):
    """A runs.csv as seqbench report writes it, one (setting, model) cell."""
    pd.DataFrame({"suite": "hand", "setting": "jane lag=5", "model_name": "alpha",
                  "metric": "accuracy", "higher_is_better": True, "seed": list(scores),
                  "score": list(scores.values())}).to_csv(path, index=False)
    return path


def test_compare_shows_the_means_of_the_seeds_it_paired(tmp_path, capsys):
    a = _runs_csv(tmp_path / "a.csv", {0: 0.30, 1: 0.40, 2: 0.50})
    b = _runs_csv(tmp_path / "b.csv", {0: 0.32, 1: 0.43, 2: 0.52, 3: 0.05})  # seed 3: B only
    out_csv = tmp_path / "cmp.csv"
    assert main(["compare", str(a), str(b), "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out
    d = np.array([0.02, 0.03, 0.02])  # B - A on the shared seeds 0, 1, 2
    p = 2 * stats.t.sf(d.mean() / (d.std(ddof=1) / math.sqrt(3)), 2)
    assert f"{p:.3g}" == "0.0198"
    # the table: means and difference over the 3 shared seeds, which the test used
    row = next(line for line in out.splitlines() if line.strip().startswith("jane lag=5"))
    assert row.split()[5:8] == ["0.400", "0.423", "+0.023"], row
    assert "paired on 3 shared seeds" in row and row.rstrip().endswith("better")
    better = out.split("better in B (1):")[1].split("worse in B")[0]
    assert "accuracy 0.4 -> 0.4233 (p = 0.0198, paired on 3 shared seeds; means over those " \
           "3, leaving out 1 seed only in B; over every seed 0.4 -> 0.33)" in better, better
    assert "-0.070" not in out and "0.4 -> 0.33 (" not in out
    c = pd.read_csv(out_csv).iloc[0]
    assert c["mean_a"] == pytest.approx(0.4) and c["mean_b"] == pytest.approx(1.27 / 3)
    assert c["diff"] == pytest.approx(d.mean()) and c["verdict"] == "better"
    assert c["mean_a_all"] == pytest.approx(0.4) and c["mean_b_all"] == pytest.approx(0.33)
    assert (c["n_a"], c["n_b"], c["n_paired"]) == (3, 4, 3)


def _plan_store(path, done, status=None):
    """A store whose suite lists jane at every lag of LAGS for alpha, beta and gamma over
    SEEDS (27 jobs), holding records only for ``done`` ((model, lag, seed) triples);
    ``status`` maps some of them to a status other than ok."""
    status = status or {}
    jobs = [{"hash": f"{m}-{lag}-{seed}", "task_label": "jane", "task_sweep": {"lag": lag},
             "model_label": m, "model_sweep": {}}
            for lag in LAGS for m in NORM for seed in SEEDS]
    with Store(path) as store:
        for i, (m, lag, seed) in enumerate(done):
            n = NORM[m][lag][SEEDS.index(seed)]
            r = _row(i, "jane-recall", "jane", {"lag": lag, "n_names": 10}, {"lag": lag}, m,
                     seed, "accuracy", True, CHANCE + (1 - CHANCE) * n, CHANCE, 1.0,
                     status=status.get((m, lag, seed), "ok"))
            r["hash"] = f"{m}-{lag}-{seed}"
            store.write(r)
        store.write_suite("hand", "hand.toml", SUITE_TEXT, "digest-hand", "2024-01-01",
                          jobs=jobs)
    return path


def test_a_sweep_of_which_one_lag_ran_is_still_lag_swept(tmp_path, capsys):
    path = _plan_store(tmp_path / "s.sqlite", [(m, 2, s) for m in NORM for s in SEEDS])
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "rep"),
                 "--no-plots"]) == 0
    out = capsys.readouterr().out
    note = ("incomplete: 18 of 27 jobs of suite hand have no result yet; run the suite again "
            "to finish them")
    assert out.splitlines()[1] == note
    assert "no lag-swept task" not in out
    hz = out.split("memory horizon")[1].split("score (mean")[0]
    assert "lag 2..10 (3)" in hz
    assert "≥ 2 (lag 5, 10 not run)" in hz and "< 2 (lag 5, 10 not run)" in hz
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"**{note}**" in md and "≥ 2 (lag 5, 10 not run)" in md
    assert note in (tmp_path / "rep" / "report.html").read_text()
    assert note in (tmp_path / "rep" / "tables.tex").read_text()
    score = out.split("score (mean")[1].split("normalised score")[0]
    assert re.search(r"jane lag=10\s+-\s+-\s+-\s+not run\s+not run\s+not run", score), score


def test_an_interrupted_suite_says_what_has_not_run(tmp_path, capsys):
    done = ([("alpha", lag, s) for lag in LAGS for s in SEEDS]        # alpha: every job
            + [("beta", lag, s) for lag in (2, 5) for s in SEEDS]     # beta: not lag 10
            + [("gamma", 2, s) for s in SEEDS] + [("gamma", 5, 0)]    # gamma: 1 seed at 5
            + [("gamma", 10, s) for s in SEEDS])                      # ... diverged at 10
    diverged = {("gamma", 10, s): "diverged" for s in SEEDS}
    path = _plan_store(tmp_path / "s.sqlite", done, diverged)
    missing = 27 - len(done)
    note = (f"incomplete: {missing} of 27 jobs of suite hand have no result yet; run the "
            "suite again to finish them")
    assert main(["results", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert note in out
    row10 = next(line for line in out.splitlines() if line.startswith("jane lag=10"))
    assert re.search(r"jane lag=10\s.*\s0\.\d{3}\s+not run\s+diverged$", row10), row10
    row5 = next(line for line in out.splitlines() if line.startswith("jane lag=5"))
    assert "(2 not run)" in row5
    assert main(["results", "--store", str(path), "--errors"]) == 0
    assert note in capsys.readouterr().out
    # compare says which side is incomplete (here B, against a complete A)
    full = _plan_store(tmp_path / "full.sqlite", [(m, lag, s) for m in NORM for lag in LAGS
                                                   for s in SEEDS])
    assert main(["compare", str(full), str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"B ({path}): {note}" in lines and not any(x.startswith("A (") for x in lines)

    with Store(path, create=False) as store:
        df, plan = store.frame("hand"), report.suite_plan(store, "hand")
    assert plan["has_record"].sum() == len(done) and len(plan) == 27
    hz = report.memory_horizons(df, plan=plan).set_index("model_name")
    assert hz.loc["alpha", "display"] == "≥ 10" and hz.loc["alpha", "missing"] == ""
    # beta's horizon is over lags 2 and 5, the ones it ran, and says lag 10 has not run
    b = hz.loc["beta"]
    assert (b["lag_min"], b["lag_max"], b["n_lags"]) == (2, 5, 2)
    assert b["missing"] == "lag 10 not run" and b["display"].endswith(
        "(2/3 censored; lag 10 not run)")
    assert hz.loc["gamma", "display"] == "< 2 (lag 10 diverged; lag 5: 2 of 3 seeds not run)"
    table = report.horizon_table(report.memory_horizons(df, plan=plan))
    assert table.loc["jane", "lags"] == "lag 2..10 (3)"
    # without the job list (an older store) the statuses still count: gamma's lag 10
    assert report.memory_horizons(df).set_index("model_name").loc["gamma", "missing"] \
        == "lag 10 diverged"


def test_report_on_a_model_skipped_everywhere_warns_nothing_and_shows_no_nan(tmp_path):
    import warnings

    rows = hand_rows()
    for r in rows:  # diagnostics with an underflowed norm and a series with no values
        if r["model"] == "alpha":
            r["diagnostics"] = {"grad_decay": {"k": [1, 2, 3], "init": [1.0, 0.5, 0.25],
                                               "trained": [1.0, 0.0, 0.0]}}
        elif r["model"] == "gamma":
            r["diagnostics"] = {"state_forgetting": {"k": [1, 2, 3], "tv": []}}
    for i, r in enumerate([r for r in hand_rows() if r["model"] == "gamma"]):
        r.update(hash=f"skip{i}", model="delta", model_label="delta", status="skipped",
                 score=None, normalised=None, error="delta cannot take this data")
        rows.append(r)
    path = make_store(tmp_path / "s.sqlite", rows)
    with Store(path, create=False) as store:
        df = store.frame("hand")
    out = tmp_path / "rep"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text, files = report.write_report(df, out, suite="hand")
    assert {"decay-jane-lag-2", "critical-difference", "lag-jane"} <= {
        p.stem for p in (out / "figures").glob("*.png")}
    nan = re.compile(r"\bnan\b", re.IGNORECASE)
    for name, content in [("terminal", text)] + [
            (n, (out / n).read_text()) for n in ("report.md", "tables.tex", "rank.html",
                                                 "score.html", "report.html")]:
        assert not nan.search(content), name
    ranks = report.wide_tables(report.cell_stats(df))["rank"]
    assert ranks.loc["mean rank (4 complete settings)", "delta"] == "-"
    assert ranks.loc["jane lag=2", "delta"] == "skipped"


def test_a_reports_cells_csv_compares_equal_to_its_store_with_cells_that_never_finished(
        tmp_path, capsys):
    """A cell with no finished seed (gamma diverged at lag 10 on every seed) has no score:
    compare takes it from cells.csv as from the store, as not ok on both sides, so a
    report's cells.csv against its own store shows every scored cell the same and nothing
    on one side only."""
    done = [(m, lag, s) for m in NORM for lag in LAGS for s in SEEDS]
    path = _plan_store(tmp_path / "s.sqlite", done, {("gamma", 10, s): "diverged"
                                                     for s in SEEDS})
    out = tmp_path / "rep"
    assert main(["report", "--store", str(path), "--out", str(out), "--no-plots"]) == 0
    cells = pd.read_csv(out / "cells.csv")
    assert (cells["n_ok"] == 0).sum() == 1  # the diverged cell is in the file
    a, b = report.load_results(out / "cells.csv"), report.load_results(path)
    cmp = report.compare(a, b).set_index(["setting", "model_name"])
    assert len(cmp) == 9
    assert set(cmp.drop(("jane lag=10", "gamma"))["verdict"]) == {"same"}
    gone = cmp.loc[("jane lag=10", "gamma")]
    assert gone["verdict"] == "not ok in A and B"
    assert gone["not_ok_a"] == "diverged: 0 of 3 ok" and gone["not_ok_b"] == "3 diverged"
    capsys.readouterr()
    assert main(["compare", str(out / "cells.csv"), str(path)]) == 0
    text = capsys.readouterr().out
    assert "only in A (0):" in text and "only in B (0):" in text
    assert "not ok in A and B (1):\n  gamma on jane lag=10 (A: diverged: 0 of 3 ok; " \
           "B: 3 diverged)" in text


def test_file_names_are_bounded_and_never_overwrite_each_other(tmp_path, capsys):
    """Plot and folder names come from labels and suite names: a 300-character label gives
    a name short enough for the file system, and names that would give the same file
    ("smoke v2" and "smoke-v2", or two names without ASCII letters) get distinct ones."""
    from seqbench.plots import SLUG_MAX, slug, slugs

    long = "jane " + "t" * 300
    assert len(slug(long)) == SLUG_MAX and slug(long) != slug(long + "u")
    assert slug("jane") == "jane"  # short, unique names are as before
    got = slugs(["smoke v2", "smoke-v2", "名前", "モデル", "jane"])
    assert len(set(got.values())) == 5 and got["jane"] == "jane"
    assert got["smoke v2"].startswith("smoke-v2-") and got["名前"].startswith("x-")

    rows = hand_rows(suite="smoke v2")
    for r in rows:
        if r["task_label"] == "jane":
            r["task_label"] = long
    path = make_store(tmp_path / "s.sqlite", rows, suite="smoke v2")
    other = hand_rows(suite="smoke-v2")
    for r in other:
        r["hash"] += "-b"
    make_store(path, other, suite="smoke-v2")
    out = tmp_path / "rep"
    assert main(["report", "--store", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(dirs) == 2 and all(d.startswith("smoke-v2") for d in dirs)
    for d in dirs:
        assert (out / d / "report.md").is_file()
        lags = list((out / d / "figures").glob("lag-*.png"))
        assert len(lags) == 1 and len(lags[0].stem) <= SLUG_MAX + 4


def test_a_suite_stopped_before_its_first_result_is_listed_as_incomplete(tmp_path, capsys):
    """A run stopped before any job finished has a job list and no rows: results and
    report name the suite and say that none of its jobs has a result yet."""
    path = _plan_store(tmp_path / "s.sqlite", [])
    note = ("incomplete: 27 of 27 jobs of suite hand have no result yet; run the suite "
            "again to finish them")
    for argv in (["results"], ["results", "--suite", "hand"], ["results", "--errors"]):
        assert main([*argv, "--store", str(path)]) == 0, argv
        out = capsys.readouterr().out
        assert note in out, argv
    assert "no job has a result yet" in out
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "r"),
                 "--no-plots"]) == 0
    assert note in capsys.readouterr().out
    cells = pd.read_csv(tmp_path / "r" / "cells.csv")  # no rows, but its header
    assert cells.empty and list(cells.columns) == report.CELL_COLUMNS
    assert main(["compare", str(tmp_path / "r" / "cells.csv"), str(path)]) == 2
    assert "no finished results in" in capsys.readouterr().err


def test_a_seed_that_failed_at_one_lag_is_named_beside_the_horizon(tmp_path):
    """beta's seed 0 failed at lag 5: its horizon is over lags 2 and 10 only, and the
    horizon says so (before, nothing did, and the failure could move the horizon)."""
    done = [(m, lag, s) for m in NORM for lag in LAGS for s in SEEDS]
    path = _plan_store(tmp_path / "s.sqlite", done, {("beta", 5, 0): "failed"})
    with Store(path, create=False) as store:
        df, plan = store.frame("hand"), report.suite_plan(store, "hand")
    hz = report.memory_horizons(df, plan=plan).set_index("model_name")
    assert hz.loc["beta", "missing"] == "lag 5: 1 of 3 seeds failed"
    assert hz.loc["beta", "display"].endswith("lag 5: 1 of 3 seeds failed)")
    assert hz.loc["alpha", "missing"] == "" and hz.loc["gamma", "missing"] == ""


def test_a_model_keeps_its_colour_across_the_figures_of_a_report(store_path, tmp_path,
                                                                  monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex

    from seqbench import plots

    seen: dict[str, set[str]] = {}
    save = plots._save

    def recording(fig, out_dir, name, title):
        for ax in fig.axes:
            for line in ax.get_lines():
                model = line.get_label().split(" ")[0]
                if model in NORM:
                    seen.setdefault(model, set()).add(to_hex(line.get_color()))
        return save(fig, out_dir, name, title)

    monkeypatch.setattr(plots, "_save", recording)
    con = sqlite3.connect(store_path)  # alpha records no learning curve: a figure without it
    with con:
        con.execute("UPDATE runs SET curve = NULL WHERE model = 'alpha'")
    con.close()
    assert main(["report", "--store", str(store_path), "--out", str(tmp_path / "r")]) == 0
    assert set(seen) == set(NORM)
    assert all(len(c) == 1 for c in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(NORM)


def test_decay_curves_average_every_seed_or_end():
    """The decay figure's mean over seeds is geometric, and at a step where one seed's norm
    is exactly 0 (or missing) the line ends there rather than jumping to the other seeds'
    mean (three seeds: 1e-2, 1e-4, 1e-6 -> 1e-4; one at 0 -> no point)."""
    from seqbench.plots import _geo_mean

    mean, arr = _geo_mean([[1.0, 1e-2, 1e-30, 5.0], [1.0, 1e-4, 0.0], [1.0, 1e-6, 1e-20]])
    assert arr.shape == (3, 3)  # cut to the shortest curve
    np.testing.assert_allclose(mean[:2], [1.0, 1e-4], rtol=1e-12)
    assert np.isnan(mean[2])


@pytest.mark.parametrize("n", [3, 10, 15, 20, 24, 60])
def test_every_model_of_a_figure_gets_its_own_colour(n):
    from seqbench.plots import model_colors

    colors = model_colors([f"m{i}" for i in range(n)])
    assert len(colors) == n and len(set(colors.values())) == n


def test_provenance_lists_settings_and_summarises_per_job_measurements():
    """A setting is listed value by value with its job counts, however many values it has;
    a per-job measurement (``rss_start_mb``) is its range and median, counted over the jobs
    that have it."""
    from seqbench.htmlreport import provenance_table

    rss = [300.5, 410.0, 432.7, 440.2, 512.9]
    provs = [{"torch": "2.13.0+cpu", "threads": t, "rss_start_mb": v}
             for t, v in zip((1, 2, 4, 8, 8), rss)]
    provs.append({"torch": "2.4.0", "threads": 1})
    table = provenance_table(pd.DataFrame({"provenance": provs}))["value (jobs)"]
    assert table["torch"] == "2.13.0+cpu (5); 2.4.0 (1)"
    assert table["threads"] == "1 (2); 8 (2); 2 (1); 4 (1)"
    assert table["rss_start_mb"] == f"300.5 .. 512.9, median {np.median(rss):g} (5)"


def test_a_parameter_zipped_with_the_lag_is_part_of_the_lag_axis():
    """``lag`` zipped with ``lag_max`` (one lag_max per lag) makes one family over the lags;
    ``lag_max`` swept as a product (two per lag) makes a family per lag_max value."""
    def rows(pairs):
        return [_row(i, "jane-recall", "jane", {"lag": lag, "lag_max": top},
                     {"lag": lag, "lag_max": top}, "alpha", 0, "accuracy", True, 0.5,
                     CHANCE, 1.0) for i, (lag, top) in enumerate(pairs)]

    zipped = report.lag_points(pd.DataFrame(rows([(2, 4), (5, 7), (10, 12)])))
    assert list(zipped["family"]) == ["jane"] * 3 and list(zipped["lag"]) == [2, 5, 10]
    repeated = report.lag_points(pd.DataFrame(rows([(2, 20), (8, 20), (20, 30)])))
    assert list(repeated["family"]) == ["jane"] * 3  # a partner value may repeat
    product = report.lag_points(pd.DataFrame(rows([(2, 12), (5, 12), (2, 20), (5, 20)])))
    assert sorted(set(product["family"])) == ["jane lag_max=12", "jane lag_max=20"]
    planned = report.swept_jobs(pd.DataFrame(rows([(2, 4), (5, 7), (10, 12)])))
    assert set(planned["family"]) == {"jane"} and len(planned) == 3


_FIGURES = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from seqbench import plots
names = ["lstm", "gru", "rnn", "irnn", "ar", "mlp", "lds", "hmm", "chance"]
ranks = pd.Series(np.linspace(1.5, 8.5, len(names)), index=names)
p = pd.DataFrame(0.9, index=names, columns=names)
p.loc["lstm", "chance"] = p.loc["chance", "lstm"] = 0.01
fr = {"models": names, "mean_ranks": ranks, "nemenyi": p, "n_blocks": 6, "pvalue": 0.02}
plots.plot_cd_diagram(fr, Path(sys.argv[1]))
"""


def test_figures_are_the_same_bytes_in_every_process(tmp_path):
    """The critical-difference diagram (whose drawing groups its labels in sets) and the
    SVG files (salted element ids, a date) come out byte-identical from two processes with
    different string hash seeds; the labels still name the models."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env.pop("SOURCE_DATE_EPOCH", None)
        subprocess.run([sys.executable, "-c", _FIGURES, str(out)], check=True, env=env)
        outs.append(out)
    for name in ("critical-difference.png", "critical-difference.svg"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    from seqbench import plots

    scope: dict = {}
    exec(_FIGURES.replace("plots.plot_cd_diagram(fr, Path(sys.argv[1]))", ""), scope)
    texts = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_save", lambda fig, *_: texts.extend(
            t.get_text() for ax in fig.axes for t in ax.texts) or {})
        plots.plot_cd_diagram(scope["fr"], tmp_path)
    assert "lstm (1.5)" in texts and "rnn (3.2)" in texts and "(8.5) chance" in texts
