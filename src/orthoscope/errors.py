"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class OrthoscopeError(Exception):
    """Bad input: a path, a file or an argument the user gave.

    The message names the problem and the file it concerns; the CLI prints it
    without a traceback and exits with code 2.
    """


class SourceError(OrthoscopeError):
    """A checkpoint cannot be found, opened or read."""


class PairingError(OrthoscopeError):
    """Base and post checkpoints do not describe the same architecture."""


def reason(error: BaseException) -> str:
    """The telling line of a library's multi-line error message.

    >>> reason(ValueError("Weights only load failed.\\n(1) ...\\nWeightsUnpickler error: Unsupported global: print"))
    'WeightsUnpickler error: Unsupported global: print'
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "error:" in line.lower()]
    return (telling or lines or [type(error).__name__])[0]
