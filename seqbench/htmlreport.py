"""One self-contained HTML page for a report: tables, figures embedded as base64 PNG
data URIs, provenance and the suite file. It loads nothing from elsewhere (no scripts,
fonts or style sheets), so it reads the same offline."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table.seqbench { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
table.seqbench th, table.seqbench td { border: 1px solid #ccc; padding: 3px 8px;
  text-align: right; }
table.seqbench th { background: #f3f3f3; }
table.seqbench td:first-child, table.seqbench th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
p.note { font-size: 0.9em; color: #555; }
"""


def table_html(table: pd.DataFrame, table_id: str = "") -> str:
    """A DataFrame as an escaped HTML table with the report's style."""
    if table is None or table.empty:
        return "<p>(no results)</p>"
    out = table.to_html(classes="seqbench", escape=True, border=0, na_rep="-")
    if table_id:
        out = out.replace("<table ", f'<table id="{html.escape(table_id)}" ', 1)
    return out


def image_html(png: Path, title: str) -> str:
    """A figure with the PNG embedded as a data URI."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    t = html.escape(title)
    return (f'<figure><img alt="{t}" src="data:image/png;base64,{data}">'
            f"<figcaption>{t}</figcaption></figure>")


#: provenance keys that are per-job measurements, not settings: summarised by their range
MEASUREMENTS = ("rss_start_mb", "peak_growth_mb")


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def provenance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each provenance key and device with its distinct values and how many jobs had each;
    a measurement (:data:`MEASUREMENTS`) as its range and median over the jobs that have
    it."""
    rows = []
    provs = [p for p in df.get("provenance", []) if isinstance(p, dict)]
    keys = list(dict.fromkeys(k for p in provs for k in p))
    for k in keys:
        values = [p[k] for p in provs if k in p]
        if k in MEASUREMENTS and all(map(_is_number, values)):
            rows.append({"what": k, "value (jobs)": f"{min(values):g} .. {max(values):g}, median "
                                                    f"{np.median(values):g} ({len(values)})"})
            continue
        counts = pd.Series([str(p.get(k)) for p in provs]).value_counts()
        rows.append({"what": k, "value (jobs)": "; ".join(f"{v} ({n})" for v, n in counts.items())})
    if "device" in df:
        counts = df["device"].astype(str).value_counts()
        rows.append({"what": "device", "value (jobs)": "; ".join(f"{v} ({n})"
                                                                for v, n in counts.items())})
    for col in ("started", "finished"):
        if col in df and df[col].notna().any():
            rows.append({"what": col, "value (jobs)":
                         f"{df[col].dropna().min()} .. {df[col].dropna().max()}"})
    if "wall_s" in df and df["wall_s"].notna().any():
        rows.append({"what": "total job wall time", "value (jobs)":
                     f"{df['wall_s'].sum():.1f} s over {len(df)} jobs"})
    return pd.DataFrame(rows).set_index("what") if rows else pd.DataFrame()


def render(
    title: str,
    sections: list[tuple[str, str]],
) -> str:
    """The page: ``sections`` are (heading, inner HTML) pairs, in order."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">written by seqbench report at {now}</p>']
    for heading, inner in sections:
        sid = "".join(c if c.isalnum() else "-" for c in heading.lower())
        body.append(f'<section id="{sid}"><h2>{html.escape(heading)}</h2>{inner}</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            "<body>" + "\n".join(body) + "</body></html>\n")


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def para(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'
