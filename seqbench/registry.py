"""Registries of models and tasks, filled from entry points.

Built-ins are declared as entry points in seqbench's own ``pyproject.toml``
(groups ``seqbench.models`` and ``seqbench.tasks``), exactly as a plugin
declares its own, so one path serves both. Entry points are loaded lazily:
listing names imports nothing; building an object imports its module.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any

from .errors import SeqbenchError


def param_defaults(cls: type) -> dict[str, Any]:
    """The constructor parameters of ``cls`` with their defaults (``inspect.Parameter.empty``
    where there is none), in signature order."""
    sig = inspect.signature(cls.__init__)
    out = {}
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = p.default
    return out


def _none_allowed(cls: type, name: str) -> bool:
    """Whether the constructor's annotation of ``name`` admits None (``float | None``)."""
    ann = inspect.signature(cls.__init__).parameters[name].annotation
    text = ann if isinstance(ann, str) else repr(ann)
    return ann is not inspect.Parameter.empty and ("None" in text or "Optional" in text)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (sweeps built with ``np.arange``);
    anything else unchanged."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and (
            isinstance(default, float) or isinstance(value, int) or float(value).is_integer()
        )
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return True


def _int64_ok(value: Any) -> bool:
    """False for an int anywhere in ``value`` (lists included) that no int64 holds: numpy,
    torch and scikit-learn would fail on it deep inside a job."""
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    if isinstance(value, list | tuple):
        return all(_int64_ok(v) for v in value)
    return True


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_params(kind: str, name: str, cls: type, params: dict[str, Any], where: str = "") -> None:
    """Raise a one-line :class:`SeqbenchError` for an unknown parameter or a value whose type
    does not match the parameter's default (a list where a number belongs, say)."""
    defaults = param_defaults(cls)
    prefix = f"{where}, " if where else ""
    for key, value in params.items():
        if key not in defaults:
            raise SeqbenchError(
                f"{prefix}{kind} {name!r}: unknown parameter {key!r}; "
                f"accepted: {', '.join(defaults) or '(none)'}"
            )
        default = defaults[key]
        if value is None and _none_allowed(cls, key):
            continue
        if not _type_ok(plain(value), default):
            raise SeqbenchError(
                f"{prefix}{kind} {name!r}, parameter {key!r}: expected "
                f"{type(default).__name__} like the default {default!r}, got {_describe(value)}"
            )
        if not _int64_ok(plain(value)):
            raise SeqbenchError(
                f"{prefix}{kind} {name!r}, parameter {key!r}: expected integers of at most "
                f"64 bits (below 2**63 in size), got {value!r}"
            )
    missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty and k not in params]
    if missing:
        raise SeqbenchError(f"{prefix}{kind} {name!r}: missing required parameter(s) {missing}")


class Registry:
    """Name -> class, from one entry-point group plus explicit registrations."""

    def __init__(self, kind: str, group: str, base: str) -> None:
        self.kind = kind
        self.group = group
        self.base = base  # "module:Class" every registered class must subclass
        self._eps: dict[str, Any] | None = None
        self._clashes: dict[str, list[str]] = {}  # name -> the entry points that claim it
        self._extra: dict[str, type] = {}
        self._loaded: dict[str, type] = {}

    def _entry_points(self) -> dict[str, Any]:
        """Name -> entry point. A name that two packages claim for different classes is
        kept aside (see :meth:`get`): only that name is unusable, never the others."""
        if self._eps is None:
            found: dict[str, Any] = {}
            clashes: dict[str, list[str]] = {}
            for ep in entry_points(group=self.group):
                other = found.get(ep.name)
                if other is not None and other.value != ep.value:
                    claims = clashes.setdefault(ep.name, [other.value])
                    if ep.value not in claims:
                        claims.append(ep.value)
                found.setdefault(ep.name, ep)
            self._eps = found
            self._clashes = clashes
        return self._eps

    def _check_class(self, name: str, cls: Any, origin: str) -> None:
        """Refuse a class that is not a subclass of the registry's base class
        (:class:`~seqbench.models.base.SeqModel` or :class:`~seqbench.tasks.base.Task`):
        the runner and the CLI call its methods."""
        import importlib

        module, _, attr = self.base.partition(":")
        base = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise SeqbenchError(f"{self.kind} {name!r} ({origin}): expected a subclass of "
                                f"{module}.{attr}, got {cls!r}")

    def register(self, name: str, cls: type) -> type:
        """Register ``cls`` under ``name`` in this process (tests, notebooks)."""
        self._check_class(name, cls, "register")
        if name in self.names() and self.get(name) is not cls:
            raise SeqbenchError(f"{self.kind} name {name!r} is already registered")
        self._name_task(cls, name)
        self._extra[name] = cls
        return cls

    def _name_task(self, cls: type, name: str) -> None:
        """A task class that leaves its ``name`` attribute empty takes the name it is
        registered under, so its messages (``task 'echo', parameter ...``) name it."""
        if self.kind == "task" and getattr(cls, "name", None) == "":
            cls.name = name

    def names(self) -> list[str]:
        return sorted(set(self._entry_points()) | set(self._extra))

    def get(self, name: str) -> type:
        if name in self._extra:
            return self._extra[name]
        if name in self._loaded:
            return self._loaded[name]
        eps = self._entry_points()
        if name not in eps:
            raise SeqbenchError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            )
        if name in self._clashes:
            raise SeqbenchError(
                f"{self.kind} name {name!r} is registered twice: "
                f"{' and '.join(sorted(self._clashes[name]))}; uninstall one of the "
                f"packages, or rename its entry point"
            )
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin must not take the others down
            raise SeqbenchError(
                f"{self.kind} {name!r} ({eps[name].value}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._check_class(name, cls, eps[name].value)
        self._name_task(cls, name)
        self._loaded[name] = cls
        return cls

    def create(self, name: str, params: dict[str, Any] | None = None, where: str = ""):
        cls = self.get(name)
        params = {k: plain(v) for k, v in (params or {}).items()}
        check_params(self.kind, name, cls, params, where)
        return build_checked(self.kind, name, cls, params, where)


def build_checked(kind: str, name: str, cls: type, params: dict[str, Any], where: str = ""):
    """``cls(**params)`` with its range check (a bad value is an error here, not at fit or
    sampling). Whatever the constructor or the check raises (a plugin's own ``ValueError``
    included) becomes one :class:`SeqbenchError` line naming the object."""
    prefix = f"{where}, " if where else ""
    try:
        obj = cls(**params)
        check_ranges(kind, obj)
    except SeqbenchError as exc:
        raise SeqbenchError(f"{prefix}{exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's own check, in its own words
        raise SeqbenchError(
            f"{prefix}{kind} {name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return obj


def check_ranges(kind: str, obj: Any) -> None:
    """The object's own check of its value ranges, where it has one: a task's ``check``,
    a model's ``_check_params`` (a :class:`SeqbenchError` naming what is expected)."""
    own = getattr(obj, "check" if kind == "task" else "_check_params", None)
    if callable(own):
        own()


models = Registry("model", "seqbench.models", "seqbench.models.base:SeqModel")
tasks = Registry("task", "seqbench.tasks", "seqbench.tasks.base:Task")


def make_model(name: str, **params):
    """Build a registered model by name with validated parameters: unknown names and
    parameters are errors that list what is accepted, a value of the wrong type or out of
    range an error that names what is expected. numpy scalars are taken as the Python
    numbers they hold."""
    return models.create(name, params)


def make_task(name: str, **params):
    """Build a registered task by name with validated parameters (names, types and the
    task's own ranges, as :func:`make_model`)."""
    return tasks.create(name, params)
