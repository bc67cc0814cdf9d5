"""Tables from the results store (read with pandas)."""

from __future__ import annotations

import pandas as pd


def _fmt_params(d: dict | None) -> str:
    if not d:
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(d.items()))


def setting_names(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``setting`` (task label and swept parameters) and ``model_name`` (model label and
    swept parameters) columns used to lay out tables."""
    df = df.copy()
    df["setting"] = [
        (t + " " + _fmt_params(s)).strip() for t, s in zip(df["task_label"], df["task_sweep"])
    ]
    df["model_name"] = [
        (m + " " + _fmt_params(s)).strip() for m, s in zip(df["model_label"], df["model_sweep"])
    ]
    return df


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Task settings x models: the primary metric's mean over seeds (finished jobs only).

    A cell with no finished job shows the status of its jobs instead (``skipped``,
    ``failed``, ...). The ``metric`` and ``(chance)`` columns name the metric (with an
    arrow for its direction) and the task's analytic chance score.
    """
    if df.empty:
        return pd.DataFrame()
    df = setting_names(df)
    settings = list(dict.fromkeys(df["setting"]))
    models = list(dict.fromkeys(df["model_name"]))
    rows = []
    for s in settings:
        sub = df[df["setting"] == s]
        first = sub.iloc[0]
        arrow = "↑" if first["higher_is_better"] else "↓"
        row = {"task": s, "metric": f"{first['metric']} {arrow}",
               "(chance)": _num(first["chance"])}
        for m in models:
            cell = sub[sub["model_name"] == m]
            ok = cell[cell["status"] == "ok"]
            if len(ok):
                row[m] = _num(ok["score"].mean())
                if len(ok) < len(cell):
                    row[m] += f" ({len(cell) - len(ok)} {'/'.join(sorted(set(cell['status']) - {'ok'}))})"
            elif len(cell):
                row[m] = "/".join(sorted(set(cell["status"])))
            else:
                row[m] = ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def _num(x) -> str:
    if x is None or pd.isna(x):
        return "-"
    return f"{float(x):.3f}"


def render_table(table: pd.DataFrame) -> str:
    """Plain-text rendering of a table (aligned columns)."""
    if table.empty:
        return "(no results)"
    return table.to_string()
