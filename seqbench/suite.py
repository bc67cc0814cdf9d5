"""Suite files: parse, validate, expand to jobs, hash.

A suite is a TOML file (see ``seqbench/suites/smoke.toml``; a clone of the repository
also has them under ``tasks/``)::

    [suite]                       # name (default: the file's stem), description, seeds
    name = "smoke"
    seeds = [0, 1]                # distinct ints in [0, 2**32) (numpy's and torch's range)

    [data]                        # data budget, the same for every model: sequences per
    n_train = 1000                # split, at most 10**9 each (n_valid may be 0)
    n_valid = 200
    n_test = 500

    [budget]                      # training budget: each key is applied to every model
    max_steps = 500               # that has a parameter of that name; `timeout` (seconds
    timeout = 300                 # per job) and `device` are read by the runner

    [[task]]
    name = "jane-recall"
    lag = [4, 24]                 # a list is a sweep
    data = { n_train = 2000 }     # optional per-task override of [data]

    [[model]]
    name = "lstm"
    label = "lstm-h32"            # optional display name (default: the model name)
    hidden_size = 32

The file is UTF-8 (a byte order mark is allowed); ``name`` and ``description`` are
strings, the name not blank. ``name`` of a ``[[task]]`` or ``[[model]]`` table is a string,
the registered name; a ``label`` is a non-blank string, stripped of surrounding spaces.
The tables show a task setting as a row named by its label and its swept parameters
(``jane-recall lag=4``), a model configuration as a column named the same way; two
entries whose rows (or columns) would get one name are refused, since their results
would be averaged into one cell, and so are a sweep that lists one value twice and a model
column named like one of the tables' own (``task``, ``metric``, ``(chance)``, ...).

A list is a sweep; for a parameter whose default is a tuple or list, a list of lists
is a sweep and a flat list a single value. The sweeps of one table form a product, except
those its ``zip`` key names: ``zip = ["lag", "lag_max"]`` advances those sweeps together
(their lists have equal lengths: ``lag = [10, 20]`` and ``lag_max = [15, 25]`` give the
two points (10, 15) and (20, 25)); several groups are a list of such lists. A model's own
explicit parameter wins over a ``[budget]`` key of the same name. Jobs are the product
tasks x task sweeps x models x model sweeps x seeds; each has a content hash of its
canonical spec (independent of key order) that the store uses to skip finished work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .errors import SeqbenchError
from .models.base import SEED_LIMIT, is_device_name  # the job's seed is random_state

DATA_KEYS = ("n_train", "n_valid", "n_test")
RUNNER_BUDGET_KEYS = ("timeout", "device")
SECTIONS = ("suite", "data", "budget", "task", "model")
#: the most sequences in one split ([data] n_train, n_valid, n_test): far beyond what fits in
#: memory, but it refuses a typo at load time rather than failing every job
MAX_DATA_SIZE = 10**9
#: the longest time limit, in seconds (about 11.6 days): the executors wait in calls whose
#: timeouts are counted in milliseconds of a 32-bit int (about 24.8 days)
MAX_TIMEOUT = 1e6


def check_timeout(seconds: Any) -> float:
    """A per-job time limit in seconds: a number in (0, ``MAX_TIMEOUT``]."""
    if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
            or not 0 < seconds <= MAX_TIMEOUT):
        raise SeqbenchError(f"expected seconds in (0, {MAX_TIMEOUT:g}], got {seconds!r}")
    return float(seconds)


def canonical_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_default(o):
    if isinstance(o, tuple | set):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {o!r}")


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=_json_default))


def _as_defaults(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``params`` with an int given for a float parameter written as that float, so that
    ``noise = 0`` and ``noise = 0.0`` (or the default 0.0) are one job with one hash."""
    return {k: float(v) if (isinstance(defaults.get(k), float) and isinstance(v, int)
                            and not isinstance(v, bool)) else v
            for k, v in params.items()}


@dataclass
class Entry:
    """One ``[[task]]`` or ``[[model]]`` table: a name, fixed parameters and sweeps."""

    name: str
    label: str
    grid: list[dict[str, Any]]
    data: dict[str, int] = field(default_factory=dict)
    swept: tuple[str, ...] = ()

    def sweep_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """The swept parameters' values in one grid point (what tells jobs apart)."""
        return {k: params[k] for k in self.swept}


@dataclass
class Suite:
    name: str
    path: str
    text: str
    description: str
    seeds: list[int]
    data: dict[str, int]
    budget: dict[str, Any]
    tasks: list[Entry]
    models: list[Entry]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of the suite, in a stable order, each with its ``hash``."""
        out = []
        for t in self.tasks:
            task_cls = registry.tasks.get(t.name)
            task_defaults = registry.param_defaults(task_cls)
            for tparams in t.grid:
                full_t = _jsonable(_as_defaults({**task_defaults, **tparams}, task_defaults))
                data = {**self.data, **t.data}
                for m in self.models:
                    model_cls = registry.models.get(m.name)
                    model_defaults = registry.param_defaults(model_cls)
                    budget = {k: v for k, v in self.budget.items() if k in model_defaults}
                    for mparams in m.grid:
                        full_m = _jsonable(_as_defaults({**model_defaults, **budget, **mparams},
                                                        model_defaults))
                        for seed in self.seeds:
                            spec = {
                                "task": t.name,
                                "task_version": int(getattr(task_cls, "version", 1)),
                                "task_params": full_t,
                                "model": m.name,
                                "model_version": int(getattr(model_cls, "version", 1)),
                                "model_params": full_m,
                                "seed": int(seed),
                                "data": data,
                            }
                            out.append({
                                **spec,
                                "hash": canonical_hash(spec),
                                "suite": self.name,
                                "task_label": t.label,
                                "task_sweep": t.sweep_of(tparams),
                                "model_label": m.label,
                                "model_sweep": m.sweep_of(mparams),
                                "timeout": self.budget.get("timeout"),
                            })
        return out


def _err(path: str, where: str, msg: str) -> SeqbenchError:
    return SeqbenchError(f"suite {path}{', ' + where if where else ''}: {msg}")


def _finite(value: Any) -> bool:
    """False for a NaN or infinite float anywhere in ``value`` (lists included)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _is_sweep(value: Any, default: Any) -> bool:
    if not isinstance(value, list):
        return False
    if isinstance(default, tuple | list):
        return len(value) > 0 and all(isinstance(v, list) for v in value)
    return True


def _zip_groups(path: str, where: str, zipped: Any) -> list[list[str]]:
    """The groups of a table's ``zip`` key: a list of parameter names, or a list of such
    lists; each group at least two names, no name in two groups."""
    expected = ("expected a list of at least two swept parameter names, or a list of such "
                f"lists, got {zipped!r}")
    if not isinstance(zipped, list) or not zipped:
        raise _err(path, f"{where}.zip", expected)
    groups = zipped if all(isinstance(g, list) for g in zipped) else [zipped]
    seen: set[str] = set()
    for group in groups:
        if len(group) < 2 or not all(isinstance(k, str) for k in group):
            raise _err(path, f"{where}.zip", expected)
        twice = [k for k in group if k in seen or group.count(k) > 1]
        if twice:
            raise _err(path, f"{where}.zip", f"parameter {twice[0]!r} is zipped twice")
        seen.update(group)
    return groups


def _expand(
    kind: str, name: str, cls: type, params: dict[str, Any], path: str,
    zipped: list[list[str]] = (),
) -> tuple[list[dict], tuple[str, ...]]:
    """Validate ``params`` against ``cls`` and expand sweeps into a list of parameter dicts
    (the product of the sweeps, each group of ``zipped`` advancing as one); also return
    the names of the swept parameters."""
    defaults = registry.param_defaults(cls)
    where = f"{kind} {name!r}"
    for key in params:
        if key not in defaults:
            raise _err(path, where, f"unknown parameter {key!r}; accepted: {', '.join(defaults)}")
    axes: dict[str, list[tuple]] = {}  # first parameter -> the points of its axis
    swept = []
    for key, value in params.items():
        if _is_sweep(value, defaults[key]):
            swept.append(key)
            if not value:
                raise _err(path, where, f"parameter {key!r}: an empty list sweeps nothing")
            axes[key] = [((key, v),) for v in value]
        else:
            axes[key] = [((key, value),)]
    for key, value in params.items():
        if not _finite(value):
            raise _err(path, where, f"parameter {key!r}: expected finite numbers, got {value!r}")
    for group in zipped:
        for key in group:
            if key not in defaults:
                raise _err(path, where, f"zip: unknown parameter {key!r}; accepted: "
                           f"{', '.join(defaults)}")
            if key not in swept:
                raise _err(path, where, f"zip: parameter {key!r} is not a sweep (a list) "
                           "of this table")
        sizes = {key: len(params[key]) for key in group}
        if len(set(sizes.values())) > 1:
            raise _err(path, where, "zip: zipped sweeps need lists of one length, got "
                       + ", ".join(f"{k} {n}" for k, n in sizes.items()))
        axes[group[0]] = [sum(points, ()) for points in zip(*(axes[k] for k in group))]
        for key in group[1:]:
            del axes[key]
    grid = [dict(pair for point in combo for pair in point)
            for combo in itertools.product(*axes.values())]
    for combo in grid:
        registry.check_params(kind, name, cls, combo, where=f"suite {path}")
        # the task or model validates its own value ranges now, not at run time
        try:
            registry.build_checked(kind, name, cls, combo)
        except SeqbenchError as exc:
            msg = str(exc)  # a task's own check names the task already: say it once
            if msg.startswith(where):
                msg = msg[len(where):].lstrip(" ,:")
            if len(grid) > 1:  # which point of the sweep (a product of the lists) fails
                at = " ".join(f"{k}={combo[k]}" for k in swept)
                msg = f"at the sweep's point {at}: {msg}"
            raise _err(path, where, msg) from None
    return grid, tuple(swept)


def _int_table(path: str, where: str, table: Any, keys: tuple[str, ...], minimum: dict) -> dict:
    if not isinstance(table, dict):
        raise _err(path, where, f"expected a table, got {type(table).__name__}")
    out = {}
    for key, value in table.items():
        if key not in keys:
            raise _err(path, where, f"unknown key {key!r}; accepted: {', '.join(keys)}")
        if (not isinstance(value, int) or isinstance(value, bool)
                or not minimum[key] <= value <= MAX_DATA_SIZE):
            raise _err(path, f"{where}.{key}",
                       f"expected an int >= {minimum[key]} and <= 10**9, got {value!r}")
        out[key] = value
    return out


def display_name(label: str, sweep: dict | None) -> str:
    """The name the tables give a task setting (a row) or a model configuration (a
    column): its label, then its swept parameters as ``key=value`` in key order
    (``jane-recall lag=4``)."""
    params = " ".join(f"{k}={v}" for k, v in sorted((sweep or {}).items()))
    return f"{label} {params}".strip()


# the tables' own columns beside the model columns (results, report, horizons)
TABLE_COLUMNS = ("task", "metric", "(chance)", "(best)", "task family", "lags")


def _check_display_names(path: str, key: str, entries: list[Entry]) -> None:
    """Refuse entries two of whose grid points the tables would show under one name
    (:func:`display_name`), which would average their results into one cell: points of
    two entries, or two different points of one entry; a sweep that lists one point twice
    (``[0.01, 1e-2]``, ``[1, 1.0]``: one job); and a model column named like one of the
    tables' own columns (:data:`TABLE_COLUMNS`)."""
    reg = registry.tasks if key == "task" else registry.models
    seen: dict[str, tuple[int, str]] = {}
    for i, entry in enumerate(entries):
        defaults = registry.param_defaults(reg.get(entry.name))
        points: dict[str, str] = {}
        for params in entry.grid:
            sweep = entry.sweep_of(params)
            display = display_name(entry.label, sweep)
            if key == "model" and display in TABLE_COLUMNS:
                raise _err(path, f"[[{key}]] #{i + 1}",
                           f"model column name {display!r} is one of the tables' own columns "
                           f"({', '.join(TABLE_COLUMNS)}); give it another 'label'")
            point = canonical_hash(_as_defaults(sweep, defaults))
            if point in points:
                raise _err(path, f"[[{key}]] #{i + 1}",
                           f"its sweep lists one point twice ({points[point]!r} and "
                           f"{display!r} are the same job); list each value once")
            points[point] = display
            j, other = seen.setdefault(display, (i, point))
            if j == i and other == point:
                continue  # the first point of this name
            also = "another point of the same table" if j == i else f"[[{key}]] #{j + 1}"
            raise _err(path, f"[[{key}]] #{i + 1}",
                       f"{key} {'row' if key == 'task' else 'column'} name {display!r} is "
                       f"also that of {also}, and the tables would average the two into one "
                       "cell; give each a distinct 'label'")


def parse_suite(text: str, path: str = "<string>") -> Suite:
    """Parse and validate suite TOML ``text``; errors are one line naming file and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SeqbenchError(f"suite {path}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in SECTIONS:
            raise _err(path, "", f"unknown section {key!r}; accepted: {', '.join(SECTIONS)}")
    head = doc.get("suite", {})
    if not isinstance(head, dict):
        raise _err(path, "[suite]", "expected a table")
    for key in head:
        if key not in ("name", "description", "seeds"):
            raise _err(path, "[suite]", f"unknown key {key!r}; accepted: name, description, seeds")
    name = head.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.strip():
        raise _err(path, "[suite].name", f"expected a non-blank string, got {name!r}")
    description = head.get("description", "")
    if not isinstance(description, str):
        raise _err(path, "[suite].description", f"expected a string, got {description!r}")
    given = head.get("seeds", [0])
    seeds = [given] if isinstance(given, int) and not isinstance(given, bool) else given
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT
                       for s in seeds)):
        raise _err(path, "[suite].seeds", f"expected a list of ints in [0, 2**32), got {given!r}")
    if len(set(seeds)) != len(seeds):
        raise _err(path, "[suite].seeds", f"expected distinct seeds, got {seeds!r}")
    minimum = {"n_train": 1, "n_valid": 0, "n_test": 1}
    data = _int_table(path, "[data]", doc.get("data", {}), DATA_KEYS, minimum)

    budget = doc.get("budget", {})
    if not isinstance(budget, dict):
        raise _err(path, "[budget]", "expected a table")
    timeout = budget.get("timeout")
    if timeout is not None:
        try:
            check_timeout(timeout)
        except SeqbenchError as exc:
            raise _err(path, "[budget].timeout", str(exc)) from None
    device = budget.get("device")
    if device is not None and not is_device_name(device):
        raise _err(path, "[budget].device", f"expected 'auto', 'cpu' or 'cuda[:i]', got "
                   f"{device!r}")

    tasks, models = [], []
    for kind, key, out in (("task", "task", tasks), ("model", "model", models)):
        entries = doc.get(key, [])
        if not isinstance(entries, list) or not entries:
            raise _err(path, f"[[{key}]]", f"expected at least one [[{key}]] table")
        labels: dict[str, int] = {}
        reg = registry.tasks if kind == "task" else registry.models
        for i, entry in enumerate(entries):
            where = f"[[{key}]] #{i + 1}"
            if not isinstance(entry, dict) or "name" not in entry:
                raise _err(path, where, "expected a table with a 'name' key")
            entry = dict(entry)
            ename = entry.pop("name")
            if not isinstance(ename, str):
                raise _err(path, f"{where}.name", f"expected a string (a {kind} name), got "
                           f"{ename!r}")
            try:
                cls = reg.get(ename)
            except SeqbenchError as exc:
                raise SeqbenchError(f"suite {path}, {where}: {exc}") from None
            label = entry.pop("label", ename)
            if not isinstance(label, str) or not label.strip():
                raise _err(path, f"{where}.label", f"expected a non-empty string, got {label!r}")
            label = label.strip()
            edata = {}
            if kind == "task" and "data" in entry:
                edata = _int_table(path, f"{where}.data", entry.pop("data"), DATA_KEYS, minimum)
            if label in labels:
                raise _err(path, where, f"{kind} label {label!r} appears twice (also "
                           f"[[{key}]] #{labels[label] + 1}); give each a distinct 'label'")
            labels[label] = i
            zipped = _zip_groups(path, where, entry.pop("zip")) if "zip" in entry else []
            grid, swept = _expand(kind, ename, cls, entry, path, zipped)
            out.append(Entry(ename, label, grid, edata, swept))
        _check_display_names(path, key, out)

    # every budget key must mean something to at least one model of the suite
    for key, value in budget.items():
        if key in RUNNER_BUDGET_KEYS:
            continue
        owners = [m.name for m in models
                  if key in registry.param_defaults(registry.models.get(m.name))]
        if not owners:
            raise _err(path, f"[budget].{key}",
                       "matches no parameter of the suite's models; budget keys are model "
                       "parameter names (max_steps, batch_size, ...) or timeout/device")
        if not _finite(value):
            raise _err(path, f"[budget].{key}", f"expected finite numbers, got {value!r}")
        for m in models:
            cls = registry.models.get(m.name)
            if key in registry.param_defaults(cls):
                registry.check_params("model", m.name, cls, {key: value},
                                      where=f"suite {path}, [budget]")
    # each model configuration with the budget applied passes the model's own range checks
    # (a model's explicit parameter wins over the budget, as in the jobs)
    for i, m in enumerate(models):
        cls = registry.models.get(m.name)
        own = {k: v for k, v in budget.items() if k in registry.param_defaults(cls)}
        if not own:
            continue
        for combo in m.grid:
            try:
                registry.build_checked("model", m.name, cls, {**own, **combo})
            except SeqbenchError as exc:
                raise SeqbenchError(f"suite {path}, [budget] applied to [[model]] #{i + 1} "
                                    f"({m.name!r}): {exc}") from None
    data.setdefault("n_train", 1000)
    data.setdefault("n_valid", 200)
    data.setdefault("n_test", 500)
    return Suite(name, str(path), text, description, seeds, data, budget, tasks, models)


def builtin_suites() -> dict[str, Path]:
    """The suites shipped inside the package (``seqbench/suites/*.toml``), by file stem."""
    folder = Path(__file__).parent / "suites"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_suite(path: str | Path) -> Path:
    """``path`` itself when it names a file (or a directory, refused later); else a bare
    name (``smoke``, or ``smoke.toml`` with no folder) of a suite shipped in the package."""
    p = Path(path)
    if p.exists() or p.parent != Path("."):
        return p
    return builtin_suites().get(p.stem if p.suffix == ".toml" else p.name, p)


def load_suite(path: str | Path) -> Suite:
    """Read and validate the suite file at ``path``, or the shipped suite of that name
    (``load_suite("smoke")``; a file of that name in the working directory wins)."""
    p = resolve_suite(path)
    if p.is_dir():
        raise SeqbenchError(f"suite {path}: expected a suite file (.toml), got a directory")
    if not p.is_file():
        raise SeqbenchError(f"suite {path}: no such file (the shipped suites, by name: "
                            f"{', '.join(builtin_suites())})")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte order mark is not TOML
    except UnicodeDecodeError as exc:
        raise SeqbenchError(f"suite {path}: expected a UTF-8 TOML text file, got bytes that "
                            f"are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return parse_suite(text, str(path))
