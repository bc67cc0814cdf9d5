"""Errors seqbench raises for bad user input.

Every user-facing mistake (a malformed suite file, an unknown model or parameter,
data of the wrong shape) raises :class:`SeqbenchError`, a ``ValueError`` whose
message is one line naming what was expected and what came. The CLI prints that
line and exits with code 2, without a traceback.
"""

from __future__ import annotations


class SeqbenchError(ValueError):
    """A user error: the message is one line that says what was expected."""


class IncompatibleError(SeqbenchError):
    """A model cannot handle this kind of data (its tags do not declare it).

    The runner records such a pair as ``skipped`` with this message.
    """


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss and was stopped."""
