"""Log files with size-based rotation that never cuts a line in two.

A ``LogFile`` says where a port's (or a service's) stdout or stderr goes;
a ``LogWriter`` writes it. Rotation renames ``path`` to ``path.1``,
``path.1`` to ``path.2`` and so on up to ``path.<backups>`` (the oldest is
dropped), and only ever happens between two lines: supervisord rotates in
the middle of a line (supervisord #749), and a line cut in two is a record
that no log reader can parse.

A log file is created 0640 and never opened through a symlink (issue 10): a
neighbour who can write to the log's directory must not be able to point our
output, as whichever user runs the service, at a file of their choosing.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ..core.checks import is_count

# At most this many old files: rotation renames each of them, every time
# (1,000 renames take a few milliseconds); a larger count is a typo, and
# backups = 10**9 would stall the writer in renames at every rotation.
MAX_BACKUPS = 1000


@dataclass(frozen=True)
class LogFile:
    """Where output goes: ``path``, rotated when it would pass ``max_bytes``,
    keeping ``backups`` older files (``path.1`` is the newest of them).

    A relative ``path`` is made absolute here, against the current directory,
    so that it means the same file in whichever process writes it. A line is
    never cut: a file ends up larger than ``max_bytes`` by at most the line
    that was being written when it filled, and a single line longer than
    ``max_bytes`` goes whole into one file.
    """

    path: str
    max_bytes: int = 10 * 2**20
    backups: int = 5

    __module__ = "occasional.ports"

    def __post_init__(self) -> None:
        path = self.path
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise TypeError(
                f"LogFile(path={self.path!r}): the path is not a non-empty string; give a file path, e.g. 'logs/web.log'"
            )
        if path.endswith(os.sep):
            raise ValueError(
                f"LogFile(path={path!r}) names a directory; give a file path in it, e.g. {path + 'out.log'!r}"
            )
        object.__setattr__(self, "path", os.path.abspath(path))
        m = self.max_bytes
        if not is_count(m, least=1):
            raise ValueError(f"LogFile(max_bytes={m!r}) is not a size; use an int of bytes >= 1, e.g. 10 * 2**20")
        b = self.backups
        if not is_count(b):
            raise ValueError(f"LogFile(backups={b!r}) is not a number of old files to keep; use an int >= 0")
        if b > MAX_BACKUPS:
            raise ValueError(
                f"LogFile(backups={b!r}) is more old files than a log keeps (at most {MAX_BACKUPS}); use {MAX_BACKUPS} or fewer, and a larger max_bytes to keep more"
            )


class LogWriter:
    """Appends bytes to a LogFile, rotating it by size between lines.

    Every ``write`` reaches the file before it returns (no buffer in this
    process), so a writer killed with SIGKILL loses nothing it was given.
    The missing directories of the path are created. A new writer on an
    existing file appends to it, and its first byte starts a new line as far
    as rotation is concerned (what a killed writer left unfinished stays
    unfinished).
    """

    def __init__(self, spec: LogFile) -> None:
        if not isinstance(spec, LogFile):
            raise TypeError(f"LogWriter({spec!r}): pass an occasional.ports.LogFile")
        self.spec = spec
        self._mid_line = False  # the last byte written was not a newline
        self._fd = -1
        os.makedirs(os.path.dirname(spec.path), exist_ok=True)
        self._open()

    def _open(self) -> None:
        path = self.spec.path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(
                    errno.ELOOP,
                    f"the log file {path!r} is a symbolic link; logs are never written through one: remove it, or give its target as the path",
                ) from None
            raise
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data``; rotate first wherever a whole line would pass ``max_bytes``."""
        if self._fd < 0:
            raise ValueError(f"write to the closed log file {self.spec.path!r}")
        data = bytes(data)
        view = memoryview(data)
        limit = self.spec.max_bytes
        pos, total = 0, len(data)
        while pos < total:
            if self._mid_line:
                # Finish the line already begun in this file, however long it gets.
                end = _line_end(data, pos)
            else:
                room = limit - self._size
                if total - pos <= room:
                    end = total
                else:
                    cut = data.rfind(b"\n", pos, pos + room) if room > 0 else -1
                    if cut >= 0:
                        end = cut + 1  # the whole lines that still fit
                    elif self._size > 0:
                        self._rotate()
                        continue
                    else:
                        end = _line_end(data, pos)  # one line longer than max_bytes: whole, alone
            self._write_all(view[pos:end])
            self._mid_line = data[end - 1] != 0x0A
            pos = end

    def _write_all(self, chunk: memoryview) -> None:
        while chunk:
            n = os.write(self._fd, chunk)
            self._size += n
            chunk = chunk[n:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        path, backups = self.spec.path, self.spec.backups
        moves = [(f"{path}.{i}", f"{path}.{i + 1}") for i in range(backups - 1, 0, -1)]
        if backups:
            moves.append((path, f"{path}.1"))
        try:
            for old, new in moves:
                try:
                    os.replace(old, new)
                except FileNotFoundError:  # fewer old files than backups, or removed by hand
                    pass
            if not backups:
                os.unlink(path)
        except FileNotFoundError:
            pass
        self._open()

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line_end(data: bytes, start: int) -> int:
    """Index just past the first newline at or after ``start``, or the end of ``data``."""
    nl = data.find(b"\n", start)
    return len(data) if nl < 0 else nl + 1
