"""Scoring a fitted model on a task's data."""

from __future__ import annotations

from typing import Any

from .data import SeqData
from .errors import SeqbenchError


def evaluate(model, task, data: SeqData) -> dict[str, Any]:
    """Score ``model`` on ``data`` drawn from ``task``.

    Returns ``{"metric", "score", "chance", "oracle", "normalised", "higher_is_better",
    "metrics", "slices"}``: the task's primary metric and its value, the task's chance
    and oracle scores, the normalised score (0 = chance, 1 = oracle or perfect), every
    metric on the scored positions, and the same per slice of the task's meta columns.
    """
    spec = task.spec()
    pred = model.predict(data.X)
    proba = None
    if data.target_kind == "classes" and model.tags().get("predict_proba", False):
        proba = model.predict_proba(data.X)
    scored = task.score(data, pred, proba)
    if spec.metric not in scored["metrics"]:
        raise SeqbenchError(
            f"task {spec.name!r}: primary metric {spec.metric!r} not among the computed "
            f"metrics {sorted(scored['metrics'])}"
        )
    score = float(scored["metrics"][spec.metric])
    return {
        "metric": spec.metric,
        "score": score,
        "chance": spec.chance,
        "oracle": spec.oracle,
        "normalised": spec.normalise(score),
        "higher_is_better": spec.higher_is_better,
        **scored,
    }
