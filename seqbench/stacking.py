"""Stack jobs: LSTM jobs of one shape trained together by one worker.

``seqbench run --stack K`` (:func:`seqbench.runner.run_suite` with ``stack=K``) groups
the jobs still to run that differ only in their ``seed`` and in the model parameters
that a stack lets each member keep (:data:`seqbench.models.stacked.PER_MEMBER`:
``random_state``, ``lr``, ``weight_decay``, ``clip_norm``, ``patience``, ``max_steps``,
``max_epochs``, ``forget_bias``): the same task, task version and parameters, data
budget, time limit, model and other model parameters (sizes, optimiser, batch size,
``eval_every``, precision, device), where the model is an
:class:`~seqbench.models.recurrent.LSTMModel` without ``tbptt``. So the seeds of one
configuration stack, and so do the points of a learning-rate (or weight-decay, ...)
sweep. Each group is cut, in suite order, into stack jobs of up to K members; a group
of one stays a plain job, as do the jobs of every other model.

A stack job is a job dict (the first member's fields, so executors route it as they would
that member: a GPU slot when there is one, a CPU worker otherwise) with

* ``"stack"``: the member jobs, each unchanged (its own hash, seed and time limit);
* ``"hash"``: a hash of the members' hashes (the store never sees it);
* ``"timeout"``: the per-job time limit × the number of members (``None`` stays ``None``),
  so the executors' limits apply to the stack as a whole.

:func:`run_stack` runs it: it samples each member's splits exactly as
:func:`~seqbench.runner.run_job` does, fits the members with
:func:`~seqbench.models.stacked.fit_stacked` and scores each one, returning one record per
member with the fields ``run_job`` writes. A member's status is its own: ``ok``,
``diverged`` (its loss alone became non-finite; the others go on), ``skipped`` or
``failed``. Members whose splits differ in shape from the others' (a task with a random
sequence length) are fitted in a stack of their own shape, or alone with ``fit`` when
they are the only one of it.

Timing: the members share one process and one training loop, so ``wall_s``, ``cpu_s``
are the stack job's totals divided evenly among its M members, and ``fit_s`` the time of
the stacked fit divided evenly among the members fitted in it; ``peak_mem_mb`` (and
``cuda_peak_mem_mb``) is the peak of the whole stack job, not divided. Every member's
``provenance`` carries ``"stacked": M``. A stack job that is stopped (timeout, worker
died) gives every member the same status and error, saying it ran in a stack.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import registry
from .errors import SeqbenchError
from .provenance import device_name
from .runner import (
    JOB_ERRORS,
    base_record,
    measured,
    prepare_job,
    record_failure,
    score_job,
    stopped_record,
)
from .suite import canonical_hash


def stackable(job: dict[str, Any]) -> bool:
    """Whether ``job``'s model can be trained in a stack: an ``LSTMModel`` (or subclass)
    without truncated BPTT (what :func:`~seqbench.models.stacked.fit_stacked` covers)."""
    from .models.recurrent import LSTMModel

    cls = registry.models.get(job["model"])
    return (isinstance(cls, type) and issubclass(cls, LSTMModel)
            and job["model_params"].get("tbptt") is None)


def stack_key(job: dict[str, Any]) -> str:
    """What members of one stack share: everything that defines the job but its seed and
    the model parameters of :data:`~seqbench.models.stacked.PER_MEMBER`."""
    from .models.stacked import PER_MEMBER

    params = {k: v for k, v in job["model_params"].items() if k not in PER_MEMBER}
    return json.dumps([job["task"], job["task_version"], job["task_params"], job["data"],
                       job["model"], job["model_version"], params, job.get("timeout")],
                      sort_keys=True, default=str)


def stack_jobs(jobs: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """``jobs`` with the stackable ones grouped into stack jobs of up to ``k`` members (the
    module docstring says how); each stack job takes the place of its first member, the
    other jobs keep their order. ``k`` = 1 returns ``jobs`` unchanged."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SeqbenchError(f"--stack: expected an int >= 1, got {k!r}")
    if k == 1:
        return list(jobs)
    groups: dict[str, list[dict[str, Any]]] = {}
    order: list[tuple[str, Any]] = []  # ("job", job) or ("group", key), by first appearance
    for job in jobs:
        if not stackable(job):
            order.append(("job", job))
            continue
        key = stack_key(job)
        if key not in groups:
            groups[key] = []
            order.append(("group", key))
        groups[key].append(job)
    out: list[dict[str, Any]] = []
    for kind, item in order:
        if kind == "job":
            out.append(item)
            continue
        members = groups[item]
        for s in range(0, len(members), k):
            chunk = members[s:s + k]
            out.append(chunk[0] if len(chunk) == 1 else make_stack(chunk))
    return out


def make_stack(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The stack job of ``members`` (jobs of one :func:`stack_key`)."""
    timeout = members[0].get("timeout")
    return {**members[0], "hash": canonical_hash([m["hash"] for m in members]), "seed": None,
            "stack": list(members), "timeout": timeout * len(members) if timeout else None}


def _members(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """The member jobs, on the device the executor gave the stack job (a GPU slot sets
    ``model_params["device"]`` of the job it takes)."""
    device = stack["model_params"].get("device")
    return [{**m, "model_params": {**m["model_params"], "device": device}}
            if "device" in m["model_params"] else m for m in stack["stack"]]


def run_stack(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a stack job: one record per member, in member order, with the fields of
    :func:`~seqbench.runner.run_job`'s record. ``wall_s`` and ``cpu_s`` are the stack's
    totals split evenly among its M members, ``fit_s`` the stacked fit's time split among
    the members fitted in it; ``peak_mem_mb`` is the stack's peak; ``provenance`` has
    ``"stacked": M``."""
    members = _members(stack)
    M = len(members)
    records = [base_record(job) for job in members]
    run = measured(lambda: _run_stack_into(members, records))
    for record in records:
        record.update(run, wall_s=run["wall_s"] / M, cpu_s=run["cpu_s"] / M,
                      provenance={**run["provenance"], "stacked": M})
        record.setdefault("device", device_name(None))
    return records


def _run_stack_into(members: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """The body of :func:`run_stack`: fills each member's record."""
    from .models.stacked import fit_stacked

    ready: dict[Any, list[tuple[int, Any, Any, tuple, Any]]] = {}
    for i, (job, record) in enumerate(zip(members, records)):
        try:
            task, spec, splits, model = prepare_job(job, record)
        except JOB_ERRORS as exc:  # noqa: BLE001 - one member must not take the stack down
            record_failure(record, exc)
            continue
        train, valid, _ = splits
        shape = (train.X.shape, None if valid is None else valid.X.shape, spec.shape)
        ready.setdefault(shape, []).append((i, task, spec, splits, model))
    for group in ready.values():
        fit0 = time.perf_counter()
        try:
            if len(group) == 1:
                _, _, spec, (train, valid, _), model = group[0]
                fitted: list[Any] = [model.fit(train, valid, shape=spec.shape)]
            else:
                fitted = fit_stacked([g[4] for g in group], [g[3][0] for g in group],
                                     None if group[0][3][1] is None else
                                     [g[3][1] for g in group], shape=group[0][2].shape)
        except JOB_ERRORS as exc:  # noqa: BLE001 - a failed fit fails its members only
            for i, *_ in group:
                record_failure(records[i], exc)
            continue
        fit_s = (time.perf_counter() - fit0) / len(group)
        decays = _trained_decays(group, fitted)
        for (i, task, _, (_, _, test), _), model, decay in zip(group, fitted, decays):
            if isinstance(model, Exception):  # this member diverged on its own
                record_failure(records[i], model)
                continue
            records[i]["fit_s"] = fit_s
            try:
                score_job(model, task, test, records[i],
                          None if decay is None else model.decay_diagnostics(decay))
            except JOB_ERRORS as exc:  # noqa: BLE001
                record_failure(records[i], exc)


def _trained_decays(group: list[tuple], fitted: list[Any]) -> list[dict | None]:
    """The gradient-decay curve of each fitted member of a stacked ``group`` on its test
    split, the members measured together (:func:`~seqbench.models.stacked.members_decay`);
    None for a member that failed, and for all when the stack was not stacked or the
    joint measurement raised (each member then measures its own, and a failure is its)."""
    from .models.stacked import members_decay

    ok = [k for k, model in enumerate(fitted) if not isinstance(model, Exception)]
    out: list[dict | None] = [None] * len(fitted)
    if len(group) < 2 or not ok:
        return out
    try:
        tests = [group[k][3][2] for k in ok]
        for k, test in zip(ok, tests):
            fitted[k]._check_fitted_X(test.X)
        got = members_decay([fitted[k] for k in ok], [fitted[k].net_ for k in ok], tests)
    except Exception:  # noqa: BLE001 - each member then measures (and fails) on its own
        return out
    for k, decay in zip(ok, got):
        out[k] = decay
    return out


def stopped_stack(stack: dict[str, Any], status: str, error: str, started: str, wall_s: float,
                  device: str | None = None) -> list[dict[str, Any]]:
    """The records of a stack job that did not return them (timed out, or its worker died):
    every member gets ``status`` and ``error`` (which notes the stack) and an even share of
    ``wall_s``."""
    M = len(stack["stack"])
    note = (f"{error}; this job ran in a stack of {M} trained together, whose time limit is "
            "the per-job limit x the number of jobs")
    out = []
    for job in stack["stack"]:  # a member job: stopped_record gives its plain record
        record = stopped_record(job, status, note, started, wall_s / M, device)
        record["provenance"]["stacked"] = M
        out.append(record)
    return out
