"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import re


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


def printable(text: object) -> str:
    """`text` with every control character (ESC, CR, NUL, ...) written as a visible escape.

    Names read from checkpoints and paths reach the terminal through this: an ANSI escape in
    a tensor name must not recolour, move the cursor or rewrite what the user sees.

    >>> printable("blk.0\\x1b[31m.weight\\r")
    'blk.0\\\\x1b[31m.weight\\\\r'
    >>> printable("a\\tb é [bold]")
    'a\\tb é [bold]'
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\t\n" else c.encode("unicode_escape").decode("ascii")
                   for c in text)


# errno values of a fault in the user's environment (disk, rights, names), not of a bug
_OS_FAULTS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
              "EROFS": "read-only file system", "EACCES": "permission denied", "EPERM": "operation not permitted",
              "ENAMETOOLONG": "file name too long", "ELOOP": "too many levels of symbolic links (a link loop?)",
              "ENOENT": "no such file or folder", "ENOTDIR": "a path component is not a folder",
              "EISDIR": "is a folder", "EEXIST": "already exists", "EIO": "input/output error",
              "EMFILE": "too many open files", "ENXIO": "no such device", "ENODEV": "no such device",
              "ETXTBSY": "file busy", "EFBIG": "file too large", "ENOTEMPTY": "folder not empty",
              "EXDEV": "cross-device link"}


def os_fault(error: BaseException) -> str | None:
    """One line for an error caused by the environment (full disk, read-only, names too long, link
    loops, rights): an OSError, or a library's error that carries one (`os error 28`, `[Errno 28]`);
    None for anything else (a bug: let it show).

    >>> import errno
    >>> os_fault(OSError(errno.ENOSPC, "No space left on device", "/out/metrics.parquet"))
    '/out/metrics.parquet: No space left on device'
    >>> os_fault(RuntimeError("Error while serializing: IoError(Read-only file system (os error 30))"))
    'read-only file system'
    >>> os_fault(ValueError("bad value")) is None
    True
    """
    import errno as errno_module

    code = error.errno if isinstance(error, OSError) else None
    loop = re.fullmatch(r"Symlink loop from '(.*)'", str(error)) if isinstance(error, RuntimeError) else None
    if loop:  # pathlib's resolve() reports a link loop as a RuntimeError
        return f"{printable(loop.group(1))}: {_OS_FAULTS['ELOOP']}"
    if code is None:
        found = re.search(r"os error (\d+)\)|\[Errno (\d+)\]", str(error))
        code = int(found.group(1) or found.group(2)) if found else None
    name = errno_module.errorcode.get(code if code is not None else -1)
    if name not in _OS_FAULTS:
        return None
    path = getattr(error, "filename", None)
    what = (error.strerror if isinstance(error, OSError) else None) or _OS_FAULTS[name]
    if path is None:
        return what
    shown = str(path)
    if len(shown) > 200:
        shown = shown[:120] + "..." + shown[-60:]
    return f"{printable(shown)}: {what}"
