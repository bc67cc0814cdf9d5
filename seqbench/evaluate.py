"""Scoring a fitted model on a task's data."""

from __future__ import annotations

from typing import Any

from .data import SeqData
from .errors import SeqbenchError


def check_drawn_from(data: SeqData, spec) -> None:
    """Refuse ``data`` that cannot be the task's (``spec``, its :class:`TaskSpec`): another
    input or target kind, another real input or target width, token or class ids beyond
    the task's vocabulary or classes (a split may lack the largest ids), or forecasting
    data for a task that is not forecasting (or the reverse). Its metric, chance and
    oracle would otherwise be reported for data they do not describe."""
    for field in ("input_kind", "target_kind", "forecasting"):
        got, want = getattr(data, field), getattr(spec, field)
        if got != want:
            raise SeqbenchError(f"evaluate: data.{field} is {got!r}, but task {spec.name!r} "
                                f"has {want!r}: expected a split of that task")
    for field, kind in (("input_size", data.input_kind), ("target_size", data.target_kind)):
        got, want = getattr(data, field), getattr(spec, field)
        ids = kind in ("tokens", "classes")
        if got > want if ids else got != want:
            raise SeqbenchError(f"evaluate: data.{field} is {got}, but task {spec.name!r} has "
                                f"{want}: expected a split of that task")


def evaluate(model, task, data: SeqData) -> dict[str, Any]:
    """Score ``model`` on ``data`` drawn from ``task``.

    Returns ``{"metric", "score", "chance", "oracle", "normalised", "higher_is_better",
    "metrics", "slices"}``: the task's primary metric and its value, the task's chance
    and oracle scores, the normalised score (0 = chance, 1 = oracle or perfect), every
    metric on the scored positions, and the same per slice of the task's meta columns.
    """
    from .errors import IncompatibleError
    from .models.base import SeqModel
    from .tasks.base import Task

    for name, value, cls, what in (("model", model, SeqModel, "a fitted model"),
                                   ("task", task, Task, "a task (sb.make_task)"),
                                   ("data", data, SeqData, "SeqData (a split of the task)")):
        if not isinstance(value, cls):
            raise SeqbenchError(f"evaluate: {name}: expected {what}, got "
                                f"{type(value).__name__}")
    spec = task.spec()
    check_drawn_from(data, spec)
    why = model.incompatibility(data, spec.shape, spec.needs_proba)
    if why:
        raise IncompatibleError(f"evaluate: {why}")
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
