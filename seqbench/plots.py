"""Figures for ``seqbench report`` (matplotlib, imported lazily; each saved as PNG and SVG).

* :func:`plot_lag_curves`: score against dependency length per lag-swept task family,
  one line per model with its 95 % t band over seeds, chance and oracle as reference
  lines, beside the normalised score with the memory-horizon threshold.
* :func:`plot_learning_curves`: the validation metric against training steps per model.
* :func:`plot_decay`: the stored diagnostics, per task setting: ``grad_decay`` (norm of
  the Jacobian of the last hidden state with respect to the state k steps earlier, at
  initialisation and after training), ``state_decay`` (||A^k|| of a fitted LDS) and
  ``state_forgetting`` (total-variation distance of the HMM's P^k rows from the
  stationary distribution).
* :func:`plot_cd_diagram`: the critical-difference diagram of the Friedman/Nemenyi test.

Every function returns a list of ``{"name", "title", "png", "svg"}`` for the files it wrote.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .report import CONFIDENCE, HORIZON_LEVEL, setting_names, t_interval


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    # the same figure gives the same SVG bytes on every run (its element ids are salted
    # hashes, by default salted afresh in each process)
    matplotlib.rcParams["svg.hashsalt"] = "seqbench"
    import matplotlib.pyplot as plt

    return plt


#: the longest name :func:`slug` gives (file systems allow 255 bytes per name)
SLUG_MAX = 80


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def slug(text: str) -> str:
    """A file-name-safe version of ``text``: lower-case ASCII letters, digits and ``-``, at
    most :data:`SLUG_MAX` characters (a longer one is cut and ends with a hash of the
    whole text)."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"
    if len(s) > SLUG_MAX:
        s = f"{s[:SLUG_MAX - 9].rstrip('-')}-{_digest(text)}"
    return s


def slugs(texts) -> dict[str, str]:
    """:func:`slug` of each of ``texts``, unique among them: texts whose slugs would
    coincide (``"a b"`` and ``"a-b"``, or two names without ASCII letters) each end with
    a hash of their own text instead, so no file overwrites another."""
    base = {t: slug(t) for t in dict.fromkeys(texts)}
    seen = Counter(base.values())
    return {t: s if seen[s] == 1 else f"{s[:SLUG_MAX - 9].rstrip('-')}-{_digest(t)}"
            for t, s in base.items()}


def _save(fig, out_dir: Path, name: str, title: str) -> dict:
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})  # no date: reproducible
    plt.close(fig)
    return {"name": name, "title": title, "png": png, "svg": svg}


def model_colors(models: list[str]) -> dict[str, tuple]:
    """One colour per model, by its place in ``models`` (pass the suite's model order to
    every figure of a report, so that a model keeps its colour across figures)."""
    plt = _pyplot()
    n = len(models)
    if n <= 20:  # tab10's colours, then tab20's, each distinct
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        return {m: cmap(i) for i, m in enumerate(models)}
    cmap = plt.get_cmap("turbo")  # more models than any qualitative map: spread over one
    return {m: cmap(0.05 + 0.9 * i / (n - 1)) for i, m in enumerate(models)}


LEGEND_INSIDE = 10  # more entries than this go in a legend under the axes


def _legend(ax, **kwargs) -> None:
    """A legend for ``ax`` if anything on it has a label (matplotlib warns otherwise); one
    of many entries goes under the axes, in columns, so that it hides no curve."""
    handles, _labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) > LEGEND_INSIDE:
        from matplotlib.transforms import offset_copy

        # 40 points under the axes (below the tick labels and the x label), however the
        # layout sizes the axes afterwards
        under = offset_copy(ax.transAxes, fig=ax.figure, y=-40, units="points")
        kwargs = {**kwargs, "loc": "upper center", "bbox_to_anchor": (0.5, 0.0),
                  "bbox_transform": under,
                  "ncol": 2 if len(handles) <= 30 else 3,
                  "fontsize": min(kwargs.get("fontsize", 8), 7)}
    ax.legend(**kwargs)


def _finite_span(values) -> tuple[float, float]:
    """Min and max of the finite ``values``; NaN, NaN if there are none."""
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan")
    return float(x.min()), float(x.max())


def _band(values: pd.Series) -> tuple[float, float, float]:
    mean, half, _ = t_interval(values.to_numpy(), CONFIDENCE)
    if not np.isfinite(half):
        half = 0.0
    return mean, mean - half, mean + half


def plot_lag_curves(pts: pd.DataFrame, horizons: pd.DataFrame, out_dir: Path,
                    colors: dict[str, tuple] | None = None) -> list[dict]:
    """One figure per lag-swept family (``pts`` from :func:`seqbench.report.lag_points`):
    left the raw metric with chance and oracle (or perfect score) per lag as dashed
    lines, right the normalised score with 0 (chance), 1 (oracle) and the 0.5 threshold;
    each model's mean over seeds with its 95 % t band, and its memory horizon marked."""
    plt = _pyplot()
    files = []
    if pts.empty:
        return files
    colors = colors or model_colors(list(dict.fromkeys(pts["model_name"])))
    names = slugs(pts["family"])
    for family, fam in pts.groupby("family", sort=False):
        fig, (ax_raw, ax_norm) = plt.subplots(1, 2, figsize=(11, 4))
        for model, sub in fam.groupby("model_name", sort=False):
            for ax, col in ((ax_raw, "score"), (ax_norm, "normalised")):
                agg = sub.groupby("lag")[col].apply(_band)
                lags = agg.index.to_numpy()
                mean = np.array([v[0] for v in agg])
                lo = np.array([v[1] for v in agg])
                hi = np.array([v[2] for v in agg])
                ax.plot(lags, mean, "o-", color=colors[model], label=model)
                ax.fill_between(lags, lo, hi, color=colors[model], alpha=0.2, linewidth=0)
            hz = horizons[(horizons["family"] == family) & (horizons["model_name"] == model)]
            if len(hz) and np.isfinite(hz["horizon"].iloc[0]) and hz["n_left"].iloc[0] == 0 \
                    and hz["n_right"].iloc[0] < hz["n_seeds"].iloc[0]:
                ax_norm.axvline(hz["horizon"].iloc[0], color=colors[model], ls=":", lw=1)
        ref = fam.groupby("lag")[["chance", "best"]].mean()
        ax_raw.plot(ref.index, ref["chance"], "k--", lw=1, label="chance")
        ax_raw.plot(ref.index, ref["best"], "k-.", lw=1, label="oracle / perfect")
        ax_norm.axhline(0, color="k", ls="--", lw=1, label="chance")
        ax_norm.axhline(1, color="k", ls="-.", lw=1, label="oracle / perfect")
        ax_norm.axhline(HORIZON_LEVEL, color="grey", ls=":", lw=1, label="horizon threshold")
        # with few seeds a t band can be wide: keep the axis on the means and references
        means = fam.groupby(["model_name", "lag"])[["score", "normalised"]].mean()
        lo_n, hi_n = _finite_span(means["normalised"])
        if np.isfinite(lo_n):
            ax_norm.set_ylim(min(-0.1, lo_n - 0.1), max(1.1, hi_n + 0.1))
        lo_r, hi_r = _finite_span([*means["score"], *ref["chance"], *ref["best"]])
        if np.isfinite(lo_r):
            pad = 0.1 * (hi_r - lo_r or 1.0)
            ax_raw.set_ylim(lo_r - pad, hi_r + pad)
        n_seeds = fam.groupby(["model_name", "lag"])["seed"].nunique().max()
        dep = fam["dep"].iloc[0]
        metric = fam["metric"].iloc[0]
        arrow = "higher" if fam["higher_is_better"].iloc[0] else "lower"
        ax_raw.set(xlabel=f"dependency length ({dep})", ylabel=f"{metric} ({arrow} is better)",
                   title=family)
        ax_norm.set(xlabel=f"dependency length ({dep})", ylabel="normalised score",
                    title=f"normalised; bands: 95% t interval over {n_seeds} seed(s)")
        _legend(ax_norm, fontsize=8, loc="best")
        _legend(ax_raw, fontsize=8, loc="best")
        files.append(_save(fig, out_dir, f"lag-{names[family]}",
                           f"Score against dependency length: {family}"))
    return files


def _curve_frame(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        for point in r["curve"] or []:
            if not isinstance(point, dict) or "step" not in point:
                continue
            for key in ("valid_loss", "valid_loglik", "train_loss", "train_loglik"):
                if point.get(key) is not None:
                    rows.append({"setting": r["setting"], "model_name": r["model_name"],
                                 "seed": r["seed"], "step": point["step"], "key": key,
                                 "value": float(point[key])})
    return pd.DataFrame(rows, columns=["setting", "model_name", "seed", "step", "key", "value"])


def plot_learning_curves(df: pd.DataFrame, out_dir: Path,
                         colors: dict[str, tuple] | None = None) -> list[dict]:
    """One figure per task setting: for each model, its validation loss (or, for models
    trained by EM, the validation log-likelihood per step; the training value where no
    validation value was recorded) against training steps, one thin line per seed."""
    plt = _pyplot()
    df = setting_names(df[df["status"] == "ok"])
    curves = _curve_frame(df)
    files = []
    if curves.empty:
        return files
    colors = colors or model_colors(list(dict.fromkeys(curves["model_name"])))
    names = slugs(curves["setting"])
    for setting, sub in curves.groupby("setting", sort=False):
        # the metric each model shows: validation if it has one, else training
        shown = {}
        for model, m in sub.groupby("model_name", sort=False):
            keys = set(m["key"])
            for k in ("valid_loss", "valid_loglik", "train_loss", "train_loglik"):
                if k in keys:
                    shown[model] = k
                    break
        kinds = sorted({"loss" if k.endswith("loss") else "loglik" for k in shown.values()})
        fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for model, key in shown.items():
                if not key.endswith(kind):
                    continue
                m = sub[(sub["model_name"] == model) & (sub["key"] == key)]
                for i, (_seed, s) in enumerate(m.groupby("seed")):
                    s = s.sort_values("step")
                    ax.plot(s["step"], s["value"], color=colors[model], lw=1.2, alpha=0.8,
                            label=f"{model} ({key.replace('_', ' ')})" if i == 0 else None)
            ax.set(xlabel="training step (EM iteration for EM models)",
                   ylabel="loss (lower is better)" if kind == "loss"
                   else "log-likelihood per step (higher is better)", title=setting)
            _legend(ax, fontsize=8)
        files.append(_save(fig, out_dir, f"curve-{names[setting]}", f"Learning curves: {setting}"))
    return files


def _geo_mean(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Index-aligned geometric mean (norms span decades) over seeds, truncated to the
    shortest curve; returns (mean, per-seed array). At an index where any seed's value is
    not positive and finite (a norm that is exactly 0, a missing value) the mean is NaN, a
    gap in the line: a mean over fewer seeds there would jump to the larger ones."""
    n = min(len(c) for c in curves)
    arr = np.array([np.asarray(c[:n], float) for c in curves])  # (seeds, k)
    good = (np.isfinite(arr) & (arr > 0)).all(axis=0)
    mean = np.full(n, np.nan)
    mean[good] = np.exp(np.log(arr[:, good]).mean(axis=0))
    return mean, arr


def plot_decay(df: pd.DataFrame, out_dir: Path,
               colors: dict[str, tuple] | None = None) -> list[dict]:
    """One figure per task setting with stored diagnostics: up to three panels, each a
    log-scale plot against k with the geometric mean over seeds.

    * recurrent nets (``grad_decay``): ||∂s_T / ∂s_{T-k}|| at initialisation (dashed) and
      after training (solid), s the recurrent state (h; (h, C) for the LSTM);
    * LDS / Kalman (``state_decay``): ||A^k||_2 of the fitted transition matrix;
    * HMM (``state_forgetting``): max over start states of TV(P^k[i, :], pi).
    Models without these diagnostics are left out; a setting with none gets no figure.
    """
    plt = _pyplot()
    df = setting_names(df[df["status"] == "ok"])
    files = []
    if df.empty:
        return files
    colors = colors or model_colors(list(dict.fromkeys(df["model_name"])))
    panels = (("grad_decay", "recurrent: ||∂s_T / ∂s_(T-k)||, s = h (LSTM: h, C)",
               "Jacobian norm"),
              ("state_decay", "linear-Gaussian: ||A^k||", "spectral norm of A^k"),
              ("state_forgetting", "HMM: TV(P^k rows, stationary)", "total variation"))
    names = slugs(df["setting"])
    for setting, sub in df.groupby("setting", sort=False):
        present = [p for p in panels
                   if any(isinstance(d, dict) and isinstance(d.get(p[0]), dict)
                          for d in sub["diagnostics"])]
        if not present:
            continue
        fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.8), squeeze=False,
                                 layout="constrained")  # no label over a neighbour's ticks
        for ax, (key, title, ylabel) in zip(axes[0], present):
            for model, m in sub.groupby("model_name", sort=False):
                diags = [d[key] for d in m["diagnostics"]
                         if isinstance(d, dict) and isinstance(d.get(key), dict)]
                if not diags:
                    continue
                k = np.asarray(diags[0]["k"], float)
                series = ((("init", "--", "at init"), ("trained", "-", "trained"))
                          if key == "grad_decay" else
                          ((("norm_A_k", "-", ""),) if key == "state_decay"
                           else (("tv", "-", ""),)))
                for field, ls, what in series:
                    vals = [d[field] for d in diags if d.get(field)]
                    if not vals:
                        continue
                    mean, _ = _geo_mean(vals)
                    n = min(len(k), len(mean))
                    if not np.isfinite(mean[:n]).any():  # nothing to draw on a log scale
                        continue
                    label = f"{model} {what}".strip()
                    ax.plot(k[:n], mean[:n], ls, color=colors[model], label=label)
            ax.set_yscale("log")
            ax.set(xlabel="k (steps back)", ylabel=ylabel, title=title)
            if not ax.lines:
                ax.text(0.5, 0.5, "nothing to plot (no positive values recorded)",
                        transform=ax.transAxes, ha="center", va="center", fontsize=9,
                        color="grey")
            _legend(ax, fontsize=8)
        fig.suptitle(setting, fontsize=10)
        files.append(_save(fig, out_dir, f"decay-{names[setting]}",
                           f"Gradient and state decay: {setting}"))
    return files


def plot_cd_diagram(fr: dict, out_dir: Path) -> list[dict]:
    """The critical-difference diagram of :func:`seqbench.report.friedman_nemenyi`
    (drawn by :func:`scikit_posthocs.critical_difference_diagram`): models placed at
    their mean rank, joined by a bar where Nemenyi finds no difference at 0.05."""
    if fr.get("nemenyi") is None or fr.get("mean_ranks") is None:
        return []
    import scikit_posthocs as sp

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.35 * len(fr["models"])))
    # drawn with the models numbered, then named: scikit-posthocs groups the labels in
    # sets, whose order for strings changes from one process to the next (and so would the
    # file's bytes); for ints it does not
    names = list(fr["mean_ranks"].index)
    ranks = pd.Series(fr["mean_ranks"].to_numpy(), index=range(len(names)))
    sig = fr["nemenyi"].loc[names, names].set_axis(ranks.index, axis=0).set_axis(
        ranks.index, axis=1)
    sp.critical_difference_diagram(ranks, sig, ax=ax, label_fmt_left="#{label}# ({rank:.2g})",
                                   label_fmt_right="({rank:.2g}) #{label}#")
    for text in ax.texts:
        text.set_text(re.sub(r"#(\d+)#", lambda m: names[int(m.group(1))], text.get_text()))
    ax.set_title(f"mean rank over {fr['n_blocks']} task settings "
                 f"(Friedman p = {fr['pvalue']:.3g}; bars: no Nemenyi difference at 0.05)",
                 fontsize=9)
    return [_save(fig, out_dir, "critical-difference", "Critical-difference diagram")]
