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
