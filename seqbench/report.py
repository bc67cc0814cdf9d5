"""Tables and statistics from the results store (read with pandas).

``summary_table`` is the quick table ``seqbench run``/``results`` print. The rest serves
``seqbench report`` and ``seqbench compare``: per-cell means with 95 % Student t
intervals over seeds, normalised scores and ranks (:func:`cell_stats`), the memory
horizon (:func:`memory_horizons`), the Friedman test with the Nemenyi post-hoc over task
settings (:func:`friedman_nemenyi`) and the comparison of two result sets
(:func:`compare`). Given a suite's job list (:func:`suite_plan`), the tables and the
horizons also show what has no result yet (:func:`incomplete_note`). Plots live in
:mod:`seqbench.plots`, the HTML page in :mod:`seqbench.htmlreport`, writing everything in
:func:`write_report`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .data import normalised_score
from .errors import SeqbenchError
from .store import json_value
from .suite import display_name


def setting_names(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``setting`` (task label and swept parameters) and ``model_name`` (model label and
    swept parameters) columns used to lay out tables."""
    df = df.copy()
    df["setting"] = [display_name(t, s) for t, s in zip(df["task_label"], df["task_sweep"])]
    df["model_name"] = [display_name(m, s) for m, s in zip(df["model_label"], df["model_sweep"])]
    return df


def in_order(df: pd.DataFrame, name: str, order: str) -> list:
    """The distinct values of column ``name`` in the suite's order: by column ``order``
    (``task_order``/``model_order``, which :meth:`seqbench.store.Store.frame` gives a
    suite with a recorded job list), else in order of first appearance."""
    if order in df.columns and len(df) and df[order].notna().all():
        return list(df.sort_values(order, kind="stable")[name].drop_duplicates())
    return list(dict.fromkeys(df[name]))


def setting_meta(df: pd.DataFrame) -> dict[str, dict]:
    """Per task setting (``setting`` column): its ``metric``, ``higher_is_better``,
    ``chance`` and ``oracle``, from the first of its rows that has a metric; a row of a
    job stopped before it was scored may not have one (a store written by an older
    seqbench), so the first row is not enough. A setting none of whose rows has a
    metric gets ``None``/NaN."""
    out = {}
    for setting, sub in df.groupby("setting", sort=False):
        known = sub[sub["metric"].notna()]
        if known.empty:
            out[setting] = {"metric": None, "higher_is_better": None,
                            "chance": float("nan"), "oracle": float("nan")}
            continue
        r = known.iloc[0]
        out[setting] = {"metric": r["metric"], "higher_is_better": bool(r["higher_is_better"]),
                        "chance": r["chance"], "oracle": r.get("oracle", float("nan"))}
    return out


def _metric_label(meta) -> str:
    """``accuracy ↑``: the metric with the arrow of its direction; ``-`` if unknown."""
    if not isinstance(meta["metric"], str):
        return "-"
    return f"{meta['metric']} {'↑' if meta['higher_is_better'] else '↓'}"


def suite_plan(store, suite: str) -> pd.DataFrame | None:
    """The suite's current job list as the store keeps it (table ``suite_jobs``, written
    by its latest ``seqbench run``), whether or not each job has a result yet.

    One row per listed job, in the suite's order: ``position``, ``hash``, ``task_label``,
    ``task_sweep``, ``model_label``, ``model_sweep`` (sweeps decoded), ``task_order``,
    ``model_order``, ``setting`` and ``model_name`` (as :func:`setting_names` makes
    them), ``has_record`` (the store holds a row for the job, of any status) and
    ``status`` (that row's status; None without one). None when the store keeps no job
    list for ``suite`` (a store written before ``suite_jobs`` existed). ``store`` is an
    open :class:`seqbench.store.Store`; only read from.
    """
    plan = store.job_list(suite)
    if plan is None:
        return None
    plan["has_record"] = plan["status"].notna()
    return setting_names(plan)


def report_inputs(store, suite: str) -> tuple[pd.DataFrame, pd.DataFrame | None,
                                               pd.DataFrame]:
    """What :func:`write_report` takes of one suite of an open store: its rows (without
    ``slices``), its job list (:func:`suite_plan`) and its :func:`lag_points`.

    The slices are read as text and decoded one job at a time into the points, then
    dropped: nothing else in a report reads them, and a sweep's take gigabytes decoded
    (a Jane recall job with ``lag_max`` keeps a slice per distinct lag)."""
    plan = suite_plan(store, suite)
    df = store.frame(suite, as_text=("slices",))
    points = lag_points(df, plan)
    return df.drop(columns=["slices"]), plan, points


def incomplete_note(plan: pd.DataFrame | None, suite: str) -> str | None:
    """One line saying how many of the suite's current jobs have no result yet (a run
    that was stopped, or not yet run since the suite was edited); None when every job
    has one, or without a job list (``plan`` from :func:`suite_plan`)."""
    if plan is None or plan.empty:
        return None
    missing = int((~plan["has_record"]).sum())
    if not missing:
        return None
    return (f"incomplete: {missing} of {len(plan)} jobs of suite {suite} have no result yet; "
            "run the suite again to finish them")


def _not_run(plan: pd.DataFrame | None) -> dict[tuple[str, str], int]:
    """(setting, model_name) -> how many of its listed jobs have no result yet."""
    if plan is None or plan.empty:
        return {}
    missing = plan[~plan["has_record"]]
    return {k: len(g) for k, g in missing.groupby(["setting", "model_name"], sort=False)}


def _layout(df: pd.DataFrame, plan: pd.DataFrame | None) -> tuple[list, list]:
    """Rows (settings) and columns (models) of a table: those of ``df``, and with a job
    list also the settings and models none of whose jobs has a result yet; in the suite's
    order (:func:`in_order`)."""
    if plan is None or plan.empty:
        return in_order(df, "setting", "task_order"), in_order(df, "model_name", "model_order")
    cols = ["setting", "model_name", "task_order", "model_order"]
    both = pd.concat([df[[c for c in cols if c in df.columns]], plan[cols]], ignore_index=True)
    return (in_order(both, "setting", "task_order"),
            in_order(both, "model_name", "model_order"))


#: The store columns (:meth:`seqbench.store.Store.frame`'s ``columns``) that
#: :func:`summary_table`, :func:`runs_frame`, :func:`load_results` and ``seqbench results``
#: read: no slices, curves or diagnostics, which a large sweep holds gigabytes of.
RUN_COLUMNS = ["suite", "task", "task_label", "task_sweep", "model", "model_label",
               "model_sweep", "seed", "status", "error", "metric", "higher_is_better", "score",
               "chance", "oracle", "normalised", "n_params", "device"]


def summary_table(df: pd.DataFrame, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Task settings x models: the primary metric's mean over seeds (finished jobs only).

    A cell with no finished job shows the status of its jobs instead (``skipped``,
    ``failed``, ...). The ``metric`` and ``(chance)`` columns name the metric (with an
    arrow for its direction) and the task's analytic chance score (see
    :func:`setting_meta`). Rows follow the suite's task order, columns its model order
    (see :func:`in_order`). Given the suite's job list (``plan``, :func:`suite_plan`),
    jobs without a result yet are shown too: a cell none of whose jobs has run reads
    ``not run``, one with some, e.g. ``0.500 (1 not run)``.
    """
    if df.empty:
        return pd.DataFrame()
    df = setting_names(df)
    settings, models = _layout(df, plan)
    meta = setting_meta(df)
    not_run = _not_run(plan)
    rows = []
    for s in settings:
        sub = df[df["setting"] == s]
        m_s = meta.get(s, {"metric": None, "higher_is_better": None, "chance": float("nan")})
        row = {"task": s, "metric": _metric_label(m_s), "(chance)": _num(m_s["chance"])}
        for m in models:
            cell = sub[sub["model_name"] == m]
            ok = cell[cell["status"] == "ok"]
            if len(ok):
                row[m] = _num(ok["score"].mean())
                if len(ok) < len(cell):
                    bad = "/".join(sorted(set(cell["status"]) - {"ok"}))
                    row[m] += f" ({len(cell) - len(ok)} {bad})"
            elif len(cell):
                row[m] = "/".join(sorted(set(cell["status"])))
            else:
                row[m] = ""
            row[m] = _with_not_run(row[m], not_run.get((s, m), 0))
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def _with_not_run(text: str, n: int) -> str:
    """A cell's text with its ``n`` jobs that have no result yet: ``not run`` alone, or
    appended as ``(n not run)``."""
    if not n:
        return text
    return f"{text} ({n} not run)" if text else "not run"


def _num(x) -> str:
    if x is None or pd.isna(x):
        return "-"
    return f"{float(x):.3f}"


def render_table(table: pd.DataFrame) -> str:
    """Plain-text rendering of a table (aligned columns)."""
    if table.empty:
        return "(no results)"
    return table.to_string()


# ---------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------

#: Task parameters read as a "dependency length" (the gap a model must bridge), in order of
#: preference: ``lag`` (Jane recall, copy with a lag, ...), ``blanks`` (copy memory),
#: ``length``/``T`` (adding, temporal order: the sequence length sets the gap), ``gap``,
#: ``delay``. A task family is *lag-swept* when its suite sweeps one of these parameters
#: over at least two values; otherwise, when its rows carry per-lag slices (a ``lag``
#: meta column, e.g. Jane recall with ``lag_max``), those slices are the sweep.
DEPENDENCY_PARAMS = ("lag", "blanks", "length", "T", "gap", "delay")
#: Slice columns read as per-example dependency lengths.
DEPENDENCY_SLICES = ("lag",)
HORIZON_LEVEL = 0.5
CONFIDENCE = 0.95


def t_interval(values, level: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and the half-width and standard deviation of a Student t interval over seeds.

    ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof=1). With fewer than two values the half-width and ``s`` are NaN
    (no interval is shown).
    """
    x = np.asarray(values, dtype=float)  # None as NaN
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    s = float(x.std(ddof=1))
    half = float(_t_quantile(0.5 + level / 2, n - 1) * s / np.sqrt(n))
    return mean, half, s


@functools.cache
def _t_quantile(q: float, dof: int) -> float:
    """Student t quantile (one per seed count: a report takes thousands of intervals)."""
    return stats.t.ppf(q, dof)


def _best_of(row) -> float:
    """The reference top score of a row's task: its oracle, else a perfect score."""
    oracle = row.get("oracle")
    if oracle is not None and np.isfinite(oracle):
        return float(oracle)
    return _spec_best(row["task"], json.dumps(row["task_params"] or {}, sort_keys=True),
                      bool(row.get("higher_is_better")))


@functools.cache
def _spec_best(task: str, params_json: str, higher_is_better: bool) -> float:
    """The task's own perfect score (one spec per task setting, however many rows)."""
    try:
        from . import registry

        return registry.tasks.get(task)(**json.loads(params_json)).spec().best
    except Exception:  # noqa: BLE001 - a task no longer installed: the metric's convention
        return 1.0 if higher_is_better else 0.0


def _fmt_ci(mean: float, half: float, digits: int = 3) -> str:
    if mean is None or not np.isfinite(mean):
        return "-"
    if half is None or not np.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


CELL_COLUMNS = ["setting", "task", "task_label", "model_name", "metric", "higher_is_better",
                "chance", "best", "n_jobs", "n_ok", "status", "mean", "sd", "ci", "ci_low",
                "ci_high", "norm_mean", "norm_ci", "rank"]


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task setting, model): statistics of the primary metric over seeds.

    Columns: ``setting``, ``task``, ``task_label``, ``model_name``, ``metric``,
    ``higher_is_better``, ``chance`` (these three per setting, :func:`setting_meta`),
    ``best`` (oracle or perfect score), ``n_jobs``, ``n_ok``, ``status`` (``ok`` or the
    statuses of the jobs that did not finish), ``mean``, ``sd``, ``ci`` (half-width of
    the 95 % t interval), ``ci_low``, ``ci_high``, ``norm_mean``, ``norm_ci`` (the same
    for the normalised score) and ``rank`` (1 = best model on that setting by mean score
    in the metric's own direction, ties averaged, means equal to 12 significant digits
    tying); ``task_order`` and ``model_order``
    where ``df`` has them. Rows follow the suite's task order, then its model order
    (:func:`in_order`).
    """
    if df.empty:  # no rows, the columns still named (a cells.csv with its header)
        return pd.DataFrame(columns=CELL_COLUMNS)
    df = setting_names(df)
    meta = setting_meta(df)
    settings = in_order(df, "setting", "task_order")
    models = in_order(df, "model_name", "model_order")
    orders = [c for c in ("task_order", "model_order") if c in df.columns]
    groups = df.groupby(["setting", "model_name"], sort=False)
    out = []
    for setting in settings:
        for model in models:
            if (setting, model) not in groups.groups:
                continue
            cell = groups.get_group((setting, model))
            ok = cell[cell["status"] == "ok"]
            first = cell.iloc[0]
            mean, half, sd = t_interval(ok["score"])
            nmean, nhalf, _ = t_interval(ok["normalised"])
            m = meta[setting]
            out.append({
                "setting": setting, "task": first["task"], "task_label": first["task_label"],
                "model_name": model, "metric": m["metric"],
                "higher_is_better": m["higher_is_better"],
                "chance": m["chance"],
                "best": _best_of(ok.iloc[0]) if len(ok) else float("nan"),
                "n_jobs": len(cell), "n_ok": len(ok),
                "status": "ok" if len(ok) == len(cell) else
                          "/".join(sorted(set(cell["status"]) - {"ok"})),
                "mean": mean, "sd": sd, "ci": half,
                "ci_low": mean - half, "ci_high": mean + half,
                "norm_mean": nmean, "norm_ci": nhalf,
                **{c: first[c] for c in orders},
            })
    cells = pd.DataFrame(out)
    cells["rank"] = float("nan")
    for _, idx in cells.groupby("setting", sort=False).groups.items():
        sub = cells.loc[idx]
        good = sub[np.isfinite(sub["mean"])]
        if good.empty:
            continue
        # a finished job was scored, so its setting's direction is known
        sign = -1.0 if good["higher_is_better"].iloc[0] else 1.0
        cells.loc[good.index, "rank"] = stats.rankdata(sign * _tie_safe(good["mean"]))
    return cells


def wide_tables(cells: pd.DataFrame, plan: pd.DataFrame | None = None,
                friedman: dict | None = None) -> dict[str, pd.DataFrame]:
    """Task settings x models, as display strings: ``score`` (mean ± 95 % CI half-width),
    ``normalised`` (the same for the normalised score) and ``rank`` (with a last row,
    the mean rank over the settings where every model finished; ``-`` for a model that
    finished on none of them, e.g. one skipped on every task). Rows and columns in the
    suite's order (:func:`in_order`). Given the suite's job list (``plan``,
    :func:`suite_plan`), a cell none of whose jobs has a result yet reads ``not run``
    and a score with some jobs still to run says how many (``(1 not run)``).
    ``friedman``: :func:`friedman_nemenyi` of ``cells`` when the caller has it already."""
    if cells.empty:
        return {}
    settings, models = _layout(cells, plan)
    not_run = _not_run(plan)
    score_rows, norm_rows, rank_rows = [], [], []
    for s in settings:
        sub = cells[cells["setting"] == s].set_index("model_name")
        if sub.empty:  # a setting none of whose jobs has a result yet
            srow = {"task": s, "metric": "-", "(chance)": "-", "(best)": "-"}
        else:
            first = sub.iloc[0]
            srow = {"task": s, "metric": _metric_label(first),
                    "(chance)": _num(first["chance"]),
                    "(best)": _num(sub["best"].dropna().iloc[0] if sub["best"].notna().any()
                                   else float("nan"))}
        nrow, rrow = {"task": s}, {"task": s}
        for m in models:
            n_missing = not_run.get((s, m), 0)
            if m not in sub.index:
                srow[m] = nrow[m] = rrow[m] = _with_not_run("", n_missing)
                continue
            c = sub.loc[m]
            if c["n_ok"] == 0:
                srow[m] = nrow[m] = rrow[m] = _with_not_run(c["status"], n_missing)
                continue
            srow[m] = _fmt_ci(c["mean"], c["ci"])
            if c["n_ok"] < c["n_jobs"]:
                srow[m] += f" ({c['n_jobs'] - c['n_ok']} {c['status']})"
            srow[m] = _with_not_run(srow[m], n_missing)
            nrow[m] = _fmt_ci(c["norm_mean"], c["norm_ci"], 2)
            rrow[m] = f"{c['rank']:g}"
        score_rows.append(srow)
        norm_rows.append(nrow)
        rank_rows.append(rrow)
    fr = friedman_nemenyi(cells) if friedman is None else friedman
    if fr["mean_ranks"] is not None:
        rank_rows.append({"task": f"mean rank ({fr['n_blocks']} complete settings)",
                          **{m: _mean_rank(fr["mean_ranks"], m) for m in models}})
    return {"score": pd.DataFrame(score_rows).set_index("task"),
            "normalised": pd.DataFrame(norm_rows).set_index("task"),
            "rank": pd.DataFrame(rank_rows).set_index("task")}


def _mean_rank(mean_ranks: pd.Series, model: str) -> str:
    """A model's mean rank, ``-`` when it was ranked on no complete setting."""
    r = mean_ranks.get(model)
    return "-" if r is None or not np.isfinite(r) else f"{r:.2f}"


# ---------------------------------------------------------------------------------------
# Ranks across tasks: Friedman test and Nemenyi post-hoc
# ---------------------------------------------------------------------------------------

def _tie_safe(values) -> np.ndarray:
    """``values`` rounded to 12 significant digits, so that equal scores averaged in
    another order (0.2066666666666667 and 0.20666666666666667) rank as the tie they are."""
    x = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        digits = np.where((x == 0) | ~np.isfinite(x), 0,
                          11 - np.floor(np.log10(np.abs(np.where(x == 0, 1, x))))).astype(int)
    return np.array([round(v, int(d)) if np.isfinite(v) else v for v, d in zip(x, digits)])


def friedman_nemenyi(cells: pd.DataFrame) -> dict:
    """Friedman test over models with task settings as blocks, then Nemenyi post-hoc.

    Blocks are task settings with each model's score *averaged over seeds*: seeds are
    repeated measurements of one condition, not independent problems, so counting them
    as blocks would overstate the evidence. Scores are oriented so that higher is
    better (lower-is-better metrics are negated) and ranked within each block, rank
    1 = best. Only models with a finished score somewhere take part, and only settings
    where all of them finished are blocks. Needs at least 3 models and 2 blocks, and some
    block where the models differ; otherwise ``skipped`` says why. Means equal to 12
    significant digits tie (see :func:`_tie_safe`).

    Returns ``{"models", "n_blocks", "matrix" (blocks x models, oriented), "mean_ranks"
    (Series, ascending), "statistic", "pvalue", "nemenyi" (models x models p-values),
    "skipped"}``; the statistic comes from :func:`scipy.stats.friedmanchisquare` and the
    post-hoc from :func:`scikit_posthocs.posthoc_nemenyi_friedman`.
    """
    out = {"models": [], "n_blocks": 0, "matrix": None, "mean_ranks": None,
           "statistic": float("nan"), "pvalue": float("nan"), "nemenyi": None, "skipped": None}
    if cells.empty:
        out["skipped"] = "no results"
        return out
    ok = cells[np.isfinite(cells["mean"])]
    models = list(dict.fromkeys(ok["model_name"]))
    oriented = _tie_safe(ok["mean"]) * np.where(ok["higher_is_better"].astype(bool), 1.0,
                                                 -1.0)
    matrix = (ok.assign(oriented=oriented)
              .pivot_table(index="setting", columns="model_name", values="oriented",
                           aggfunc="first", sort=False)
              .reindex(columns=models))
    matrix = matrix.dropna(axis=0, how="any")
    out["models"] = models
    out["n_blocks"] = len(matrix)
    if len(matrix):
        ranks = matrix.rank(axis=1, ascending=False)  # 1 = best, ties averaged
        out["mean_ranks"] = ranks.mean(axis=0).sort_values()
        out["matrix"] = matrix
    if len(models) < 3:
        out["skipped"] = f"needs at least 3 models with results, got {len(models)}"
        return out
    if len(matrix) < 2:
        out["skipped"] = (f"needs at least 2 task settings where every model finished, "
                          f"got {len(matrix)}")
        return out
    if (matrix.nunique(axis=1) == 1).all():  # the statistic is 0/0: nothing to test
        out["skipped"] = (f"no differences to test: the {len(models)} models tie on every "
                          f"one of the {len(matrix)} task settings")
        return out
    res = stats.friedmanchisquare(*[matrix[m].to_numpy() for m in models])
    out["statistic"], out["pvalue"] = float(res.statistic), float(res.pvalue)
    try:
        import scikit_posthocs as sp
    except ImportError:  # pragma: no cover - the `report` extra is not installed
        out["skipped"] = "Nemenyi post-hoc needs scikit-posthocs (pip install seqbench[report])"
        return out
    out["nemenyi"] = sp.posthoc_nemenyi_friedman(matrix.to_numpy())
    out["nemenyi"].index = out["nemenyi"].columns = models
    return out


def friedman_text(fr: dict) -> str:
    if fr["skipped"]:
        text = f"Friedman test skipped: {fr['skipped']}"
        if fr["mean_ranks"] is not None:
            text += "\nmean rank: " + ", ".join(f"{m} {r:.2f}"
                                                for m, r in fr["mean_ranks"].items())
        return text
    lines = [f"Friedman chi2 = {fr['statistic']:.3f}, p = {fr['pvalue']:.3g} "
             f"({len(fr['models'])} models, {fr['n_blocks']} task settings as blocks, "
             "scores averaged over seeds)",
             "mean rank (1 = best): " + ", ".join(f"{m} {r:.2f}"
                                                 for m, r in fr["mean_ranks"].items())]
    if fr["nemenyi"] is not None:
        pairs = []
        names = list(fr["nemenyi"].columns)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                p = float(fr["nemenyi"].loc[a, b])
                if p < 0.05:
                    pairs.append(f"{a} vs {b} (p = {p:.3g})")
        lines.append("Nemenyi, significantly different at 0.05: "
                     + (", ".join(pairs) if pairs else "none"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Memory horizon
# ---------------------------------------------------------------------------------------

def crossing(lags, scores, level: float = HORIZON_LEVEL) -> tuple[float, str]:
    """The longest dependency length at which a normalised-score curve stays >= ``level``.

    With lags sorted ascending ``L_1 < ... < L_m`` and scores ``s_i`` (NaNs dropped):
    if ``s_1 < level`` the horizon is below the measured range (returns ``(L_1, "<")``);
    otherwise at the first ``i`` with ``s_i >= level > s_{i+1}`` it is the linear
    interpolation of the crossing,
    ``L_i + (s_i - level) / (s_i - s_{i+1}) * (L_{i+1} - L_i)`` (returns ``(h, "=")``);
    if the score never drops below ``level`` it is at least the largest lag
    (returns ``(L_m, ">=")``). Repeated lags are averaged first.
    """
    pts = pd.Series(np.asarray(scores, float), index=np.asarray(lags, float))
    pts = pts[np.isfinite(pts.to_numpy())]
    if pts.empty:
        return float("nan"), "none"
    pts = pts.groupby(level=0).mean().sort_index()
    L, s = pts.index.to_numpy(), pts.to_numpy()
    if s[0] < level:
        return float(L[0]), "<"
    for i in range(len(s) - 1):
        if s[i + 1] < level:
            return float(L[i] + (s[i] - level) / (s[i] - s[i + 1]) * (L[i + 1] - L[i])), "="
    return float(L[-1]), ">="


def _dep_params(jobs: pd.DataFrame) -> dict[str, tuple[str, frozenset[str]]]:
    """Task label -> (its dependency parameter (:data:`DEPENDENCY_PARAMS`), the swept
    parameters that move with it), for each label of ``jobs`` (rows with ``task_label``
    and ``task_sweep``) that sweeps one over at least two values. A parameter moves with
    the dependency one when it takes two values or more and each value of the dependency
    parameter comes with one of its values over the label's jobs (a ``zip`` of the suite
    file, such as ``lag`` with ``lag_max``): it is part of the lag axis, not a family of
    its own."""
    out = {}
    if jobs.empty:
        return out
    for label, sub in jobs.groupby("task_label", sort=False):
        sweeps = [d or {} for d in sub["task_sweep"]]
        keys = set().union(*sweeps)
        values = {k: [json.dumps(d.get(k), sort_keys=True) for d in sweeps] for k in keys}
        dep = next((p for p in DEPENDENCY_PARAMS if p in keys
                    and len(set(values[p])) >= 2), None)
        if dep is None:
            continue
        n_dep = len(set(values[dep]))
        along = frozenset(k for k in keys - {dep} if len(set(values[k])) >= 2
                          and len(set(zip(values[dep], values[k]))) == n_dep)
        out[label] = (dep, along)
    return out


def _family(label: str, sweep: dict, dep: str, along: frozenset[str] = frozenset()) -> str:
    """A lag-swept family: the task label and its sweeps other than the dependency one
    and those that move with it."""
    return display_name(label, {k: v for k, v in sweep.items()
                                if k != dep and k not in along})


def _job_list(df: pd.DataFrame, plan: pd.DataFrame | None) -> pd.DataFrame:
    """The suite's jobs, with or without a result: ``plan`` (:func:`suite_plan`) if given,
    else the rows of ``df`` (every status)."""
    if plan is not None and not plan.empty:
        return plan
    return setting_names(df) if not df.empty else df


def swept_jobs(df: pd.DataFrame, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every job of a lag-swept task family, whether or not it has a result: from the
    suite's job list (``plan``, :func:`suite_plan`) if given, else the rows of ``df``.
    Columns ``family``, ``dep``, ``model_name``, ``lag`` and ``status`` (None: no result
    yet). A family is lag-swept when the suite sweeps its dependency parameter, not only
    when results at two of its values exist."""
    cols = ["family", "dep", "model_name", "lag", "status"]
    jobs = _job_list(df, plan)
    if jobs.empty:
        return pd.DataFrame(columns=cols)
    deps = _dep_params(jobs)
    rows = []
    for _, r in jobs.iterrows():
        dep, along = deps.get(r["task_label"], (None, frozenset()))
        sweep = r["task_sweep"] or {}
        if dep is None or dep not in sweep:
            continue
        status = r["status"] if isinstance(r["status"], str) else None
        rows.append({"family": _family(r["task_label"], sweep, dep, along), "dep": dep,
                     "model_name": r["model_name"], "lag": float(sweep[dep]), "status": status})
    return pd.DataFrame(rows, columns=cols)


def lag_points(df: pd.DataFrame, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Normalised score against dependency length for every finished job of a lag-swept
    task family. Columns: ``family``, ``dep`` (the parameter or slice column),
    ``model_name``, ``seed``, ``lag``, ``score``, ``normalised``, ``chance``, ``best``,
    ``metric``, ``higher_is_better``. See :data:`DEPENDENCY_PARAMS` for what counts; which
    parameter a task sweeps is read from the suite's job list (``plan``, see
    :func:`swept_jobs`) where given, so a sweep only one of whose values has finished
    still counts.

    Rows of a swept parameter come first, one per job, then the per-lag slices, one per
    job and lag. ``df["slices"]`` may hold the stored JSON text
    (:meth:`seqbench.store.Store.frame` with ``as_text=("slices",)``): each row's is
    decoded in turn, and only its scores kept.
    """
    cols = ["family", "dep", "model_name", "seed", "lag", "score", "normalised", "chance",
            "best", "metric", "higher_is_better"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    deps = _dep_params(_job_list(df, plan))
    ok = setting_names(df[df["status"] == "ok"])
    swept = []  # a point per job
    sliced = []  # (job, slice column, lags, scores) per job
    for r in ok.to_dict("records"):
        dep, along = deps.get(r["task_label"], (None, frozenset()))
        sweep = r["task_sweep"] or {}
        # 1. a swept dependency parameter: the family is the task label and its other sweeps
        if dep is not None and dep in sweep:
            swept.append({"family": _family(r["task_label"], sweep, dep, along), "dep": dep,
                          "model_name": r["model_name"], "seed": r["seed"],
                          "lag": float(sweep[dep]), "score": r["score"],
                          "normalised": r["normalised"], "chance": r["chance"],
                          "best": _best_of(r), "metric": r["metric"],
                          "higher_is_better": bool(r["higher_is_better"])})
            continue
        # 2. per-lag slices of one setting (a spread of lags within the data)
        found = _lag_slice(json_value(r["slices"]), r["metric"])
        if found is not None:
            sliced.append((r, *found))
    parts = [pd.DataFrame(swept, columns=cols)] if swept else []
    if sliced:
        parts.append(_slice_points(sliced, cols))
    if not parts:
        return pd.DataFrame(columns=cols)
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _lag_slice(slices, metric: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The first of :data:`DEPENDENCY_SLICES` with at least two values in one job's
    ``slices``: its name, the lags and the scores of ``metric`` there (lags without that
    metric left out); None when the job has none."""
    if not isinstance(slices, dict):
        return None
    for col in DEPENDENCY_SLICES:
        sl = slices.get(col)
        if not isinstance(sl, dict) or len(sl) < 2:
            continue
        lags, scores = [], []
        for key, metrics in sl.items():
            score = (metrics or {}).get(metric)
            if score is not None:
                lags.append(float(key))
                scores.append(float(score))
        return col, np.array(lags, dtype=float), np.array(scores, dtype=float)
    return None


def _slice_points(sliced: list[tuple[dict, str, np.ndarray, np.ndarray]],
                  cols: list[str]) -> pd.DataFrame:
    """The points of :func:`lag_points`'s per-lag slices: ``sliced`` holds (job row, slice
    column, lags, scores) per job; each job's fields are repeated over its lags."""
    n = [len(lags) for _, _, lags, _ in sliced]

    def each(values, dtype=object) -> np.ndarray:  # one value per job, repeated per lag
        return np.repeat(np.array(values, dtype=dtype), n)

    jobs = [r for r, *_ in sliced]
    chance = each([r["chance"] for r in jobs], float)
    best = each([_best_of(r) for r in jobs], float)
    score = np.concatenate([scores for *_, scores in sliced])
    normalised = normalised_score(score, chance, best)
    columns = {
        "family": each([f"{r['setting']} (per {col})" for r, col, *_ in sliced]),
        "dep": each([col for _, col, *_ in sliced]),
        "model_name": each([r["model_name"] for r in jobs]),
        "seed": each([r["seed"] for r in jobs], None),
        "lag": np.concatenate([lags for _, _, lags, _ in sliced]),
        "score": score, "normalised": normalised, "chance": chance, "best": best,
        "metric": each([r["metric"] for r in jobs]),
        "higher_is_better": each([bool(r["higher_is_better"]) for r in jobs], bool),
    }
    return pd.DataFrame(columns, columns=cols, copy=False)


def _missing_lags(jobs: pd.DataFrame, dep: str) -> str:
    """What a model lacks on a family's lags (``jobs``: its rows of :func:`swept_jobs`):
    the lags where no seed finished, with why (``not run``: no result yet, or the jobs'
    status), and the lags where some seeds have no result (``lag 2: 1 of 3 seeds
    failed``: the horizon of such a seed is over its other lags); ``""`` when nothing
    lacks."""
    whole: dict[str, list[float]] = {}
    partial = []
    for lag, js in jobs.groupby("lag", sort=True):
        status = [s if isinstance(s, str) else "not run" for s in js["status"]]
        if "ok" not in status:
            why = "/".join(sorted(set(status)))
            whole.setdefault(why, []).append(lag)
            continue
        lacking = [s for s in status if s != "ok"]
        if lacking:
            why = "/".join(sorted(set(lacking)))
            partial.append(f"{dep} {lag:g}: {len(lacking)} of {len(status)} seeds {why}")
    parts = [f"{dep} {', '.join(f'{x:g}' for x in lags)} {why}" for why, lags in whole.items()]
    return "; ".join(parts + partial)


def memory_horizons(df: pd.DataFrame, level: float = HORIZON_LEVEL,
                    plan: pd.DataFrame | None = None,
                    points: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model and lag-swept task family: the memory horizon, the longest dependency
    length at which the normalised score stays >= ``level`` (see :func:`crossing`),
    computed per seed and then averaged with a 95 % t interval over seeds.

    A seed whose curve never drops below ``level`` counts at the largest measured lag and
    one already below at the smallest lag counts at the smallest; ``n_right``/``n_left``
    count such censored seeds, and ``display`` says ``>= L_max`` or ``< L_min`` when
    every seed is censored the same way (the mean is then a bound, not an estimate).

    The horizon is computed over the lags where the model finished (``lag_min``,
    ``lag_max``, ``n_lags``). The family's lags are those the suite lists for it (its
    job list ``plan``, :func:`suite_plan`, where given, else every row of ``df``):
    ``planned_lags`` (the model's, with its measured ones), and ``missing`` says which of
    them lack a result and why (``lag 20 not run``, ``lag 40 failed``, ``lag 10: 1 of 2
    seeds not run``; ``""`` if none), and ``display`` repeats it. A model listed for a
    family with no finished job in it gets a row too: ``display`` is the status of its
    jobs (``not run`` where they have no result yet) and the horizon NaN.
    ``points``: :func:`lag_points` of ``df`` and ``plan`` when the caller has them already.
    """
    pts = lag_points(df, plan) if points is None else points
    jobs = swept_jobs(df, plan)
    cols = ["family", "dep", "model_name", "lag_min", "lag_max", "n_lags", "n_seeds",
            "horizon", "ci", "n_right", "n_left", "per_seed", "display", "missing",
            "planned_lags"]
    if pts.empty and jobs.empty:
        return pd.DataFrame(columns=cols)
    # each group's rows, taken one group at a time (the points can be millions)
    in_pts = pts.groupby(["family", "model_name"], sort=False).indices
    by_jobs = {k: g for k, g in jobs.groupby(["family", "model_name"], sort=False)}
    out = []
    for key in dict.fromkeys([*by_jobs, *sorted(in_pts, key=lambda k: in_pts[k][0])]):
        family, model = key
        sub = pts.iloc[in_pts.get(key, [])]
        planned = by_jobs.get(key, jobs.iloc[:0])
        dep = (sub if len(sub) else planned)["dep"].iloc[0]
        missing = _missing_lags(planned, dep) if len(planned) else ""
        lags = sorted(set(planned["lag"]) | set(sub["lag"]))
        if sub.empty:
            why = sorted({s if isinstance(s, str) else "not run" for s in planned["status"]})
            out.append({"family": family, "dep": dep, "model_name": model,
                        "lag_min": float("nan"), "lag_max": float("nan"), "n_lags": 0,
                        "n_seeds": 0, "horizon": float("nan"), "ci": float("nan"),
                        "n_right": 0, "n_left": 0, "per_seed": [],
                        "display": "/".join(why) or "-", "missing": missing,
                        "planned_lags": lags})
            continue
        per_seed, kinds = [], []
        for _seed, s in sub.groupby("seed", sort=True):
            h, kind = crossing(s["lag"], s["normalised"], level)
            if kind != "none":
                per_seed.append(h)
                kinds.append(kind)
        mean, half, _ = t_interval(per_seed)
        lo, hi = float(sub["lag"].min()), float(sub["lag"].max())
        n_r, n_l = kinds.count(">="), kinds.count("<")
        notes = []
        if not per_seed:
            display = "-"
        elif n_r == len(kinds):
            display = f"≥ {hi:g}"
        elif n_l == len(kinds):
            display = f"< {lo:g}"
        else:
            display = _fmt_ci(mean, half, 1)
            if n_r or n_l:
                notes.append(f"{n_r + n_l}/{len(kinds)} censored")
        if missing:
            notes.append(missing)
        if notes:
            display += f" ({'; '.join(notes)})"
        out.append({"family": family, "dep": dep, "model_name": model,
                    "lag_min": lo, "lag_max": hi, "n_lags": sub["lag"].nunique(),
                    "n_seeds": len(per_seed), "horizon": mean, "ci": half, "n_right": n_r,
                    "n_left": n_l, "per_seed": per_seed, "display": display,
                    "missing": missing, "planned_lags": lags})
    return pd.DataFrame(out, columns=cols)


def horizon_table(hz: pd.DataFrame) -> pd.DataFrame:
    """Task families x models, the memory horizon's display string. The ``lags`` column
    names the family's lags: every lag the suite lists for it (``planned_lags``), also
    those where some model has no result yet (its cell says which)."""
    if hz.empty:
        return pd.DataFrame()
    rows = []
    for family, sub in hz.groupby("family", sort=False):
        lags = sorted(set().union(*map(set, sub["planned_lags"])))
        row = {"task family": family,
               "lags": f"{sub['dep'].iloc[0]} {lags[0]:g}..{lags[-1]:g} ({len(lags)})"}
        row.update(dict(zip(sub["model_name"], sub["display"])))
        rows.append(row)
    return pd.DataFrame(rows).set_index("task family").fillna("")


# ---------------------------------------------------------------------------------------
# Comparing two result sets
# ---------------------------------------------------------------------------------------

def load_results(path: str | Path, suite: str | None = None) -> pd.DataFrame:
    """Finished runs of one suite from a store (``.sqlite``/``.db`` or any SQLite file,
    opened read-only) or a CSV written by ``seqbench report`` (``runs.csv``: one row per
    seed; or ``cells.csv``: means with ``sd`` and ``n_ok``). Returns a frame with
    ``setting``, ``model_name``, ``metric``, ``higher_is_better`` and either
    ``seed``/``score`` or ``mean``/``sd``/``n_ok``.

    Errors (:class:`SeqbenchError`, one line): an input holding several suites when
    ``suite`` is None (cells of different suites are not merged); a ``suite`` the input
    does not hold; two rows for one (setting, model, seed), or for one (setting, model)
    in a cells.csv (never one of them silently); a seed, score, mean, sd or n_ok that
    is not a number. From a store whose suite has jobs with no result yet, ``attrs``
    ``"incomplete"`` holds :func:`incomplete_note`'s line (else None)."""
    from .store import Store

    p = Path(path)
    note, not_ok = None, {}
    if p.is_dir():
        raise SeqbenchError(f"compare: {path}: a directory (expected a store or a CSV, such "
                            f"as {p / 'cells.csv'})")
    if not p.is_file():
        raise SeqbenchError(f"compare: {path}: no such file (expected a store or a CSV)")
    if p.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(p)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise SeqbenchError(f"compare: {path}: not a readable CSV ({exc})") from None
        need = {"setting", "model_name", "metric", "higher_is_better"}
        per_seed = {"seed", "score"} <= set(df.columns)
        per_cell = {"mean", "sd", "n_ok"} <= set(df.columns)
        if not (need <= set(df.columns) and (per_seed or per_cell)):
            raise SeqbenchError(
                f"compare: {path}: expected a runs.csv or cells.csv from seqbench report "
                f"(columns {sorted(need)} and seed/score or mean/sd/n_ok), got columns "
                f"{list(df.columns)}")
        if "suite" in df.columns:
            names = list(dict.fromkeys(df["suite"].dropna().astype(str)))
            _check_suite(path, "CSV", names, suite)
            if suite is not None:
                df = df[df["suite"].astype(str) == suite]
        df = _numeric_columns(df, path, ("seed", "score") if per_seed else ("mean", "sd", "n_ok"))
        if not per_seed:  # a cell with no finished seed (failed, diverged, not run) has no
            not_ok = _not_ok_csv_cells(df)  # score, as a store has no ok run for it
            df = df[df["n_ok"] > 0]
        df["higher_is_better"] = df["higher_is_better"].astype(bool)
    else:
        with Store(p, create=False) as store:
            names = store.suite_names()
            _check_suite(path, "store", names, suite)
            df = store.frame(suite, columns=RUN_COLUMNS)
            name = suite if suite is not None else (names[0] if names else None)
            note = incomplete_note(suite_plan(store, name), name) if name else None
        named = setting_names(df) if not df.empty else df
        not_ok = _not_ok_cells(named)
        df = runs_frame(named)
    _check_unique(df, path)
    df = df.reset_index(drop=True)
    df.attrs["incomplete"] = note  # a store's suite with jobs not run yet: one line
    df.attrs["not_ok"] = not_ok
    return df


#: statuses of jobs that ran and gave no score
NOT_OK = ("failed", "timeout", "diverged")


def _not_ok_csv_cells(cells: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """:func:`_not_ok_cells` for a ``cells.csv``: its cells with no seed ok whose status
    (a ``/``-joined set) is made of failed, timeout and diverged, as ``"failed/timeout: 0
    of 3 ok"``."""
    if "status" not in cells.columns:
        return {}
    out = {}
    for _, r in cells[cells["n_ok"] == 0].iterrows():
        status = str(r["status"])
        if status and set(status.split("/")) <= set(NOT_OK):
            n = int(r["n_jobs"]) if "n_jobs" in r and pd.notna(r["n_jobs"]) else None
            out[(r["setting"], r["model_name"])] = {
                "text": f"{status}: 0" + (f" of {n}" if n is not None else "") + " ok",
                "metric": r["metric"], "higher_is_better": bool(r["higher_is_better"])}
    return out


def _not_ok_cells(df: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(setting, model_name) -> ``{"text": "2 failed, 1 timeout", "metric": ...,
    "higher_is_better": ...}`` for the cells of a store's frame with jobs that ran and
    gave no score (a CSV from ``seqbench report`` holds finished runs only: none)."""
    if df.empty or "status" not in df.columns:
        return {}
    bad = df[df["status"].isin(NOT_OK)]
    out = {}
    for key, g in bad.groupby(["setting", "model_name"], sort=False):
        counts = g["status"].value_counts()
        out[key] = {"text": ", ".join(f"{int(counts[st])} {st}" for st in NOT_OK
                                      if st in counts),
                    "metric": g["metric"].dropna().iloc[0] if g["metric"].notna().any()
                    else None,
                    "higher_is_better": bool(g["higher_is_better"].dropna().iloc[0])
                    if g["higher_is_better"].notna().any() else True}
    return out


def _check_suite(path, kind: str, names: list[str], suite: str | None) -> None:
    if suite is None and len(names) > 1:
        raise SeqbenchError(f"compare: {kind} {path} holds {len(names)} suites "
                            f"({', '.join(names)}); choose one with --suite")
    if suite is not None and suite not in names:
        raise SeqbenchError(f"compare: {kind} {path} has no suite {suite!r}; it has: "
                            f"{', '.join(names) or 'none'}")


def _numeric_columns(df: pd.DataFrame, path, cols: tuple[str, ...]) -> pd.DataFrame:
    """``cols`` as numbers (empty cells: NaN); ``seed`` and ``n_ok`` whole numbers."""
    df = df.copy()
    for col in cols:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = df[col][values.isna() & df[col].notna()]
        if col in ("seed", "n_ok"):
            bad = df[col][~(np.isfinite(values) & (values == np.round(values))
                            & (values >= 0))]
        if len(bad):
            raise SeqbenchError(
                f"compare: {path}: column {col!r}: expected "
                + ("whole numbers >= 0" if col in ("seed", "n_ok") else "numbers")
                + f", got {str(bad.iloc[0])!r} (line {bad.index[0] + 2})")
        df[col] = values.astype(int) if col in ("seed", "n_ok") else values.astype(float)
    return df


def _check_unique(df: pd.DataFrame, path) -> None:
    keys = ["setting", "model_name", "seed"] if "seed" in df.columns else ["setting",
                                                                          "model_name"]
    dup = df[df.duplicated(keys, keep=False)]
    if dup.empty:
        return
    counts = dup.groupby(keys, sort=False).size()
    shown = "; ".join(f"{k[0]} / {k[1]}" + (f" seed {k[2]}" if len(k) > 2 else "")
                      + f" ({n} rows)" for k, n in list(counts.items())[:3])
    more = f"; and {len(counts) - 3} more" if len(counts) > 3 else ""
    raise SeqbenchError(f"compare: {path}: several rows for one ({', '.join(keys)}): "
                        f"{shown}{more}; expected one each (two configurations under "
                        "one label?)")


def runs_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per finished job with the columns ``compare`` and ``runs.csv`` use."""
    cols = ["suite", "setting", "model_name", "task", "model", "seed", "metric",
            "higher_is_better", "score", "normalised", "chance", "n_params", "device"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    if "setting" not in df.columns:
        df = setting_names(df)
    ok = df[df["status"] == "ok"]
    out = ok[cols].copy()
    out["higher_is_better"] = out["higher_is_better"].astype(bool)
    return out.reset_index(drop=True)


def _cell_summary(sub: pd.DataFrame) -> dict:
    if "seed" in sub.columns and "score" in sub.columns:
        seeds = sub["seed"].astype(int)
        if seeds.duplicated().any():
            r = sub.iloc[0]
            raise SeqbenchError(f"compare: cell {r['setting']} / {r['model_name']}: seed "
                                f"{int(seeds[seeds.duplicated()].iloc[0])} appears twice")
        scores = dict(zip(seeds, sub["score"].astype(float)))
        x = np.array(list(scores.values()))
        return {"seeds": scores, "mean": float(x.mean()),
                "sd": float(x.std(ddof=1)) if len(x) > 1 else float("nan"), "n": len(x)}
    r = sub.iloc[0]
    return {"seeds": None, "mean": float(r["mean"]), "sd": float(r["sd"]), "n": int(r["n_ok"])}


def difference_test(a: dict, b: dict) -> tuple[float, str, int, float]:
    """p-value for "B differs from A", the test used, the number of seeds it paired and
    the difference B - A it tested.

    Paired t-test (:func:`scipy.stats.ttest_rel`) over the seeds both sides have
    per-seed scores for, when there are at least two such shared seeds (seeds only one
    side has are left out of the test, which then estimates the mean of the per-seed
    differences on the shared seeds); otherwise Welch's t-test on every seed of each
    side (:func:`scipy.stats.ttest_ind_from_stats` with unequal variances, the
    difference of the means), which needs two scores on each side. With no spread at
    all (deterministic models), p is 0 when the scores differ and 1 when they are
    equal. NaN and ``"none"``: too few seeds.
    """
    shared = []
    if a["seeds"] is not None and b["seeds"] is not None:
        shared = sorted(set(a["seeds"]) & set(b["seeds"]))
    if len(shared) >= 2:
        xa = np.array([a["seeds"][s] for s in shared])
        xb = np.array([b["seeds"][s] for s in shared])
        d = xb - xa  # per-seed differences on the shared seeds
        est = float(d.mean())
        if np.all(d == d[0]):  # no spread in the differences: t is 0/0 or infinite
            return (1.0 if d[0] == 0 else 0.0), "paired", len(shared), est
        return float(stats.ttest_rel(xb, xa).pvalue), "paired", len(shared), est
    est = b["mean"] - a["mean"]
    if a["n"] < 2 or b["n"] < 2 or not (np.isfinite(a["sd"]) and np.isfinite(b["sd"])):
        return float("nan"), "none", 0, est
    if a["sd"] == 0 and b["sd"] == 0:
        return (1.0 if a["mean"] == b["mean"] else 0.0), "welch", 0, est
    res = stats.ttest_ind_from_stats(b["mean"], b["sd"], b["n"], a["mean"], a["sd"], a["n"],
                                     equal_var=False)
    return float(res.pvalue), "welch", 0, est


def check_alpha(alpha: float) -> float:
    """The significance level, a number in (0, 1)."""
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise SeqbenchError(f"compare: --alpha: expected a significance level in (0, 1), "
                            f"got {alpha!r}")
    return float(alpha)


def compare(a: pd.DataFrame, b: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (task setting, model) cell: the means of A and B, ``diff`` = B - A, the p-value
    of :func:`difference_test` (``test``: ``paired``, ``welch`` or ``none``; ``n_paired``:
    the seeds a paired test used) and a verdict for B relative to A: ``better`` /
    ``worse`` when p < ``alpha`` with the tested difference in the metric's good / bad
    direction, ``same`` otherwise, ``untested`` with too few seeds; for a cell with no
    score on one side, ``not ok in B`` (``in A``, ``in A and B``) where that side's jobs
    ran and failed, timed out or diverged, and ``only in A`` / ``only in B`` where that
    side has no such job. ``not_ok_a`` and ``not_ok_b`` count each side's jobs of the
    cell that gave no score (``"1 failed, 2 timeout"`` from a store; from a cells.csv,
    ``"diverged: 0 of 3 ok"`` for a cell with no seed ok; a runs.csv holds finished runs
    only); their seeds are left out of the test.
    ``alpha`` must be in (0, 1).

    ``mean_a``, ``mean_b`` and ``diff`` are over the seeds the test used, so they agree
    with the verdict: for a paired test, the ``n_paired`` seeds both sides share (seeds
    only one side has are left out; ``diff`` is then the mean per-seed difference the
    test tested), otherwise every seed of each side. ``n_a`` and ``n_b`` count every seed
    of each side, and ``mean_a_all`` and ``mean_b_all`` are the means over them (equal to
    ``mean_a``/``mean_b`` unless a paired test left seeds out)."""
    alpha = check_alpha(alpha)
    rows = []
    ga = {k: g for k, g in a.groupby(["setting", "model_name"], sort=False)}
    gb = {k: g for k, g in b.groupby(["setting", "model_name"], sort=False)}
    bad_a, bad_b = a.attrs.get("not_ok") or {}, b.attrs.get("not_ok") or {}
    for key in list(dict.fromkeys([*ga, *gb, *bad_a, *bad_b])):
        sa, sb = ga.get(key), gb.get(key)
        ref = sa if sa is not None else sb
        info = bad_a.get(key) or bad_b.get(key) or {}
        metric = ref["metric"].iloc[0] if ref is not None else info.get("metric")
        hib = (bool(ref["higher_is_better"].iloc[0]) if ref is not None
               else info.get("higher_is_better", True))
        row = {"setting": key[0], "model_name": key[1], "metric": metric,
               "higher_is_better": hib,
               "mean_a": float("nan"), "mean_b": float("nan"), "n_a": 0, "n_b": 0,
               "diff": float("nan"), "pvalue": float("nan"), "test": "none", "n_paired": 0,
               "mean_a_all": float("nan"), "mean_b_all": float("nan"),
               "not_ok_a": bad_a.get(key, {}).get("text", ""),
               "not_ok_b": bad_b.get(key, {}).get("text", "")}
        if sa is None or sb is None:
            if ref is not None:
                side = _cell_summary(ref)
                which = "a" if sa is not None else "b"
                row[f"mean_{which}"] = row[f"mean_{which}_all"] = side["mean"]
                row[f"n_{which}"] = side["n"]
            if sa is None and sb is None:
                row["verdict"] = "not ok in A and B"
            elif sb is None:
                row["verdict"] = "not ok in B" if row["not_ok_b"] else "only in A"
            else:
                row["verdict"] = "not ok in A" if row["not_ok_a"] else "only in B"
            rows.append(row)
            continue
        ca, cb = _cell_summary(sa), _cell_summary(sb)
        if sa["metric"].iloc[0] != sb["metric"].iloc[0]:
            raise SeqbenchError(f"compare: cell {key[0]} / {key[1]}: metric "
                                f"{sa['metric'].iloc[0]!r} in A but {sb['metric'].iloc[0]!r} in B")
        p, test, n_paired, est = difference_test(ca, cb)
        mean_a, mean_b = ca["mean"], cb["mean"]
        if test == "paired":  # the numbers shown are over the seeds the test paired
            shared = sorted(set(ca["seeds"]) & set(cb["seeds"]))
            mean_a = float(np.mean([ca["seeds"][s] for s in shared]))
            mean_b = float(np.mean([cb["seeds"][s] for s in shared]))
        if not np.isfinite(p):
            verdict = "untested"
        elif p < alpha and est != 0:
            verdict = "better" if (est > 0) == row["higher_is_better"] else "worse"
        else:
            verdict = "same"
        row.update(mean_a=mean_a, mean_b=mean_b, n_a=ca["n"], n_b=cb["n"], diff=est,
                   pvalue=p, test=test, n_paired=n_paired, verdict=verdict,
                   mean_a_all=ca["mean"], mean_b_all=cb["mean"])
        rows.append(row)
    cols = ["setting", "model_name", "metric", "higher_is_better", "mean_a", "mean_b", "n_a",
            "n_b", "diff", "pvalue", "test", "n_paired", "verdict", "mean_a_all", "mean_b_all",
            "not_ok_a", "not_ok_b"]
    return pd.DataFrame(rows, columns=cols)


def _left_out(r) -> str:
    """The seeds a paired test left out, e.g. ``1 seed only in B``; ``""`` if none."""
    if r["test"] != "paired":
        return ""
    parts = []
    for side, n in (("A", r["n_a"] - r["n_paired"]), ("B", r["n_b"] - r["n_paired"])):
        if n > 0:
            parts.append(f"{n} seed{'s' * (n != 1)} only in {side}")
    return ", ".join(parts)


def _test_label(r) -> str:
    """``paired``, ``paired on 2 shared seeds`` (shared seeds only), ``welch`` or ``none``."""
    if _left_out(r):
        return f"paired on {r['n_paired']} shared seeds"
    return r["test"]


def _not_ok_line(r) -> str:
    """``  model on setting (A: 1 failed; B: 3 timeout)``: a compared cell's jobs not ok."""
    sides = [f"{side}: {r[col]}" for side, col in (("A", "not_ok_a"), ("B", "not_ok_b"))
             if r[col]]
    return f"  {r['model_name']} on {r['setting']} ({'; '.join(sides)})"


def compare_text(cmp: pd.DataFrame, name_a: str = "A", name_b: str = "B",
                 changed_only: bool = False) -> str:
    """The comparison as a table, then the lists of what got better and what got worse.
    ``changed_only``: the table leaves out the cells whose verdict is ``same`` (the lists
    and the count of those below are as always).

    The means and differences shown are those :func:`compare` tested: over the shared
    seeds where the test paired those only (the lists then say which seeds were left
    out, and the means over every seed)."""
    if cmp.empty:
        return "(nothing to compare)"
    show = cmp.assign(
        metric=[f"{m} {'↑' if h else '↓'}" for m, h in zip(cmp["metric"], cmp["higher_is_better"])],
        A=cmp["mean_a"].map(_num), B=cmp["mean_b"].map(_num),
        diff=cmp["diff"].map(lambda d: "-" if not np.isfinite(d) else f"{d:+.3f}"),
        p=cmp["pvalue"].map(lambda p: "-" if not np.isfinite(p) else f"{p:.3g}"),
        test=[_test_label(r) for _, r in cmp.iterrows()],
    )[["setting", "model_name", "metric", "A", "B", "diff", "p", "test", "verdict"]]
    if changed_only:
        show = show[cmp["verdict"] != "same"]
    table = (show.to_string(index=False) if len(show)
             else "(every cell unchanged within seed noise)")
    lines = [f"A = {name_a}", f"B = {name_b}", "", table, "",
             "p: paired t-test over the seeds A and B share (when they share at least 2; "
             "seeds only one side has are left out), else Welch's t-test",
             "A, B, diff: means over the seeds the test used (for 'paired on k shared "
             "seeds', those k seeds only)", ""]
    for verdict, title in (("better", "better in B"), ("worse", "worse in B"),
                           ("not ok in B", "not ok in B (no score: its jobs did not finish "
                            "ok)"),
                           ("not ok in A", "not ok in A (no score: its jobs did not finish "
                            "ok)"),
                           ("not ok in A and B", "not ok in A and B"),
                           ("only in A", "only in A"), ("only in B", "only in B")):
        sub = cmp[cmp["verdict"] == verdict]
        if verdict.startswith("not ok") and sub.empty:
            continue
        lines.append(f"{title} ({len(sub)}):")
        for _, r in sub.iterrows():
            if verdict in ("better", "worse"):
                line = (f"  {r['model_name']} on {r['setting']}: {r['metric']} "
                        f"{r['mean_a']:.4g} -> {r['mean_b']:.4g} (p = {r['pvalue']:.3g}, "
                        f"{_test_label(r)}")
                left_out = _left_out(r)
                if left_out:
                    line += (f"; means over those {r['n_paired']}, leaving out {left_out}; "
                             f"over every seed {r['mean_a_all']:.4g} -> {r['mean_b_all']:.4g}")
                lines.append(line + ")")
            elif verdict.startswith("not ok"):
                lines.append(_not_ok_line(r))
            else:
                lines.append(f"  {r['model_name']} on {r['setting']}")
    partial = cmp[cmp["verdict"].isin(["better", "worse", "same", "untested"])
                  & ((cmp["not_ok_a"] != "") | (cmp["not_ok_b"] != ""))]
    if not partial.empty:
        lines.append(f"scored, with jobs not ok (their seeds left out) ({len(partial)}):")
        lines += [_not_ok_line(r) for _, r in partial.iterrows()]
    n_same = int((cmp["verdict"] == "same").sum())
    n_untested = int((cmp["verdict"] == "untested").sum())
    lines.append(f"unchanged within seed noise: {n_same}; too few seeds to test: {n_untested}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Text formats and the report writer
# ---------------------------------------------------------------------------------------

def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index as the first column, ``|`` escaped)."""
    if table.empty:
        return "(no results)\n"
    t = table.reset_index()

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in t.columns) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * (len(t.columns) - 1)) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in t.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
          "±": r"$\pm$", "≥": r"$\geq$", "↑": r"$\uparrow$", "↓": r"$\downarrow$"}


def to_latex(table: pd.DataFrame, caption: str = "") -> str:
    """A ``tabular`` (booktabs rules) with special characters escaped."""
    if table.empty:
        return "% (no results)\n"
    t = table.reset_index()

    def esc(v) -> str:
        return "".join(_LATEX.get(ch, ch) for ch in str(v))

    lines = [f"% {esc(caption)}" if caption else "",
             r"\begin{tabular}{l" + "r" * (len(t.columns) - 1) + "}", r"\toprule",
             " & ".join(esc(c) for c in t.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in t.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(line for line in lines if line != "") + "\n"


TABLE_FORMATS = ("md", "csv", "tex", "html")


def suite_report(df: pd.DataFrame, plan: pd.DataFrame | None = None,
                 suite: str = "", points: pd.DataFrame | None = None) -> dict:
    """Every number of one suite's report: ``cells``, ``tables`` (wide display tables),
    ``points`` (score against lag), ``horizons``, ``horizon_table``, ``friedman`` and
    ``incomplete`` (:func:`incomplete_note`: None, or the line saying how many of the
    suite's jobs have no result yet). ``plan``: the suite's job list
    (:func:`suite_plan`), which lets the tables and horizons show what has not run.
    ``points``: :func:`lag_points` of ``df`` and ``plan`` when the caller has them
    already (then ``df`` needs no ``slices``)."""
    cells = cell_stats(df)
    points = lag_points(df, plan) if points is None else points
    fr = friedman_nemenyi(cells)
    hz = memory_horizons(df, plan=plan, points=points)
    return {"cells": cells, "tables": wide_tables(cells, plan, fr), "points": points,
            "horizons": hz, "horizon_table": horizon_table(hz), "friedman": fr,
            "incomplete": incomplete_note(plan, suite)}


NO_HORIZON = "(no lag-swept task in this suite)"


def report_text(rep: dict, suite: str) -> str:
    """The terminal report: whether the suite is incomplete, memory horizons, then the
    tables and the rank test."""
    lines = [f"suite {suite}"]
    if rep.get("incomplete"):
        lines.append(rep["incomplete"])
    lines += ["", f"memory horizon (longest dependency length with normalised score >= "
              f"{HORIZON_LEVEL}; mean ± 95% CI over seeds):"]
    lines.append(render_table(rep["horizon_table"]) if not rep["horizon_table"].empty
                 else NO_HORIZON)
    titles = {"score": "score (mean ± 95% CI over seeds)",
              "normalised": "normalised score (0 = chance, 1 = oracle or perfect)",
              "rank": "rank per task setting (1 = best)"}
    for key, title in titles.items():
        if key in rep["tables"]:
            lines += ["", title + ":", render_table(rep["tables"][key])]
    lines += ["", friedman_text(rep["friedman"])]
    return "\n".join(lines)


def write_report(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    suite: str,
    suite_text: str | None = None,
    formats: tuple[str, ...] = TABLE_FORMATS,
    plots: bool = True,
    plan: pd.DataFrame | None = None,
    points: pd.DataFrame | None = None,
) -> tuple[str, list[Path]]:
    """Write one suite's report into ``out_dir``; return the terminal text and the files.

    ``plan``: the suite's job list (:func:`suite_plan`); with it, jobs that have no
    result yet are reported as such (a line at the top of the terminal text,
    ``report.md``, ``tables.tex`` and ``report.html``, ``not run`` cells, and the lags
    each memory horizon lacks). ``points``: :func:`lag_points` of ``df`` and ``plan``
    when the caller has them already; ``df`` then needs no ``slices`` (the report of a
    large sweep: the points from a frame with the slices as text, the report from the
    frame without them).

    Files, by ``formats``: ``md``: ``report.md`` (every table); ``tex``: ``tables.tex``;
    ``csv``: the numbers, ``cells.csv`` per cell, ``runs.csv`` per finished job and
    ``horizons.csv`` per model and family (``seqbench compare`` reads the first two);
    ``html``: the self-contained ``report.html`` and the bare tables ``score.html``,
    ``normalised.html`` and ``rank.html``. With ``plots``, figures in ``figures/`` as PNG
    and SVG.

    The report is written into a temporary folder beside ``out_dir`` and moved in whole:
    a failure leaves ``out_dir`` as it was. The files an earlier report wrote there
    (listed in its ``.seqbench-report``) are replaced, and those this one does not write
    removed; other files in ``out_dir`` are left alone.

    An unknown or empty ``formats``, or an ``out_dir`` that cannot be created or
    written, is a :class:`SeqbenchError` (one line).
    """
    check_formats(formats)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SeqbenchError(f"report: --out {out_dir}: expected a directory, got a file")
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        text, files = _write_report(df, staging, suite=suite, suite_text=suite_text,
                                    formats=formats, plots=plots, plan=plan, points=points)
        names = [f.relative_to(staging) for f in files]
        out.mkdir(exist_ok=True)
        for name in names:  # nothing is moved unless everything can be
            for parent in name.parents:  # figures/ for figures/x.png, then "."
                if (out / parent).exists() and not (out / parent).is_dir():
                    raise FileExistsError(17, "File exists", str(out / parent))
            if (out / name).is_dir():
                raise IsADirectoryError(21, "Is a directory", str(out / name))
        clear_report(out)  # what the previous report here wrote, and only that
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
        (out / MANIFEST).write_text(json.dumps({"files": [str(n) for n in names]}, indent=1))
        return text, [out / n for n in names]
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out_dir) else ""
        raise SeqbenchError(f"report: --out {out_dir}: cannot write there{where}: "
                            f"{exc.strerror or exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


#: the file in a report folder that lists what the report wrote there (what the next
#: report into that folder replaces; nothing else in it is touched)
MANIFEST = ".seqbench-report"


def clear_report(out: str | Path, keep: frozenset[str] = frozenset()) -> None:
    """Remove the files an earlier report wrote into ``out`` (those its manifest lists, and
    the reports of the suite folders it lists, except the names in ``keep``), and empty
    folders left behind; files of anything else in ``out`` stay."""
    out = Path(out)
    try:
        listed = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return
    if not isinstance(listed, dict):
        return

    def inside(name) -> Path | None:
        path = Path(str(name))
        return None if path.is_absolute() or ".." in path.parts else out / path

    for sub in listed.get("suites", []):
        if str(sub) not in keep and (path := inside(sub)) is not None and path.is_dir():
            clear_report(path)
            with contextlib.suppress(OSError):
                path.rmdir()
    for name in listed.get("files", []):
        if str(name) not in keep and (path := inside(name)) is not None and path.is_file():
            path.unlink()
            if path.parent != out:  # figures/, once empty
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
    (out / MANIFEST).unlink(missing_ok=True)


def check_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """Table formats for :func:`write_report`: at least one, each of :data:`TABLE_FORMATS`."""
    if not formats:
        raise SeqbenchError(f"report: --format: expected one or more of "
                            f"{', '.join(TABLE_FORMATS)} (comma-separated), got none")
    for f in formats:
        if f not in TABLE_FORMATS:
            raise SeqbenchError(f"report: unknown format {f!r}; accepted: "
                                f"{', '.join(TABLE_FORMATS)}")
    return formats


def _write_report(df: pd.DataFrame, out: Path, *, suite: str, suite_text: str | None,
                  formats: tuple[str, ...], plots: bool, plan: pd.DataFrame | None,
                  points: pd.DataFrame | None) -> tuple[str, list[Path]]:
    """The body of :func:`write_report`, ``out`` an existing directory."""
    from . import htmlreport
    from . import plots as plotting

    rep = suite_report(df, plan, suite, points)
    note = rep["incomplete"]
    text = report_text(rep, suite)
    files: list[Path] = []

    def put(name: str, content: str) -> None:
        (out / name).write_text(content)
        files.append(out / name)

    titles = {"score": "Score (mean ± 95% CI over seeds)",
              "normalised": "Normalised score (0 = chance, 1 = oracle or perfect)",
              "rank": "Rank per task setting (1 = best)"}
    fr_text = friedman_text(rep["friedman"])
    if "md" in formats:
        md = [f"# seqbench report: suite {suite}", ""]
        if note:
            md += [f"**{note}**", ""]
        md += [f"## Memory horizon (normalised score >= {HORIZON_LEVEL})", "",
               to_markdown(rep["horizon_table"]) if not rep["horizon_table"].empty
               else NO_HORIZON + "\n"]
        for key, title in titles.items():
            if key in rep["tables"]:
                md += [f"## {title}", "", to_markdown(rep["tables"][key])]
        md += ["## Ranks across tasks", "", "```", fr_text, "```", ""]
        md += ["## Provenance (distinct values, with the number of jobs)", "",
               to_markdown(htmlreport.provenance_table(df))]
        put("report.md", "\n".join(md))
    if "tex" in formats:
        tex = [f"% {note}\n"] if note else []
        tex += [to_latex(rep["horizon_table"], "memory horizon")
                if not rep["horizon_table"].empty else f"% memory horizon: {NO_HORIZON}\n"]
        tex += [to_latex(rep["tables"][k], t) for k, t in titles.items() if k in rep["tables"]]
        put("tables.tex", "\n".join(tex))
    if "csv" in formats:
        cells = rep["cells"].drop(columns=["task_order", "model_order"], errors="ignore")
        if not cells.empty:
            cells = cells.assign(suite=suite)
        cells.to_csv(out / "cells.csv", index=False)
        runs_frame(df).to_csv(out / "runs.csv", index=False)
        rep["horizons"].drop(columns=["per_seed", "planned_lags"]).to_csv(
            out / "horizons.csv", index=False)
        files += [out / "cells.csv", out / "runs.csv", out / "horizons.csv"]
    figures: list[dict] = []
    if plots:
        fig_dir = out / "figures"
        # one colour per model across every figure, in the suite's model order
        colors = plotting.model_colors(in_order(setting_names(df), "model_name", "model_order"))
        figures += plotting.plot_lag_curves(rep["points"], rep["horizons"], fig_dir, colors)
        figures += plotting.plot_cd_diagram(rep["friedman"], fig_dir)
        figures += plotting.plot_learning_curves(df, fig_dir, colors)
        figures += plotting.plot_decay(df, fig_dir, colors)
        for f in figures:
            files += [f["png"], f["svg"]]
    if "html" in formats:
        sections = [("Incomplete", htmlreport.para(note))] if note else []
        sections += [("Memory horizon", htmlreport.para(
            f"The longest dependency length at which the normalised score stays at or above "
            f"{HORIZON_LEVEL}, interpolated between measured lags, per seed; mean ± 95% "
            "Student t interval over seeds. '≥ L' / '< L': beyond / below the measured range; "
            "a note in parentheses names the lags where the model has no result.")
            + (htmlreport.table_html(rep["horizon_table"], "horizons")
               if not rep["horizon_table"].empty else htmlreport.para(NO_HORIZON)))]
        for key, title in titles.items():
            if key in rep["tables"]:
                sections.append((title, htmlreport.table_html(rep["tables"][key], key)))
        sections.append(("Ranks across tasks", htmlreport.pre(fr_text)))
        if figures:
            sections.append(("Figures", "".join(htmlreport.image_html(f["png"], f["title"])
                                                for f in figures)))
        sections.append(("Provenance", htmlreport.table_html(htmlreport.provenance_table(df),
                                                             "provenance")))
        sections.append(("Suite file", htmlreport.pre(suite_text) if suite_text
                         else htmlreport.para("(the store holds no text for this suite)")))
        put("report.html", htmlreport.render(f"seqbench report: suite {suite}", sections))
        for key in titles:  # the bare tables too, for pasting elsewhere
            if key in rep["tables"]:
                put(f"{key}.html", htmlreport.table_html(rep["tables"][key], key))
    return text, files
