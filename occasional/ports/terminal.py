"""Pseudo-terminals for ports (API.md section 13, issue 14): ``open_port(argv,
pty=True)`` and ``ports.resize``.

The standard library does the whole job: ``os.openpty`` gives both ends
non-inheritable (O_CLOEXEC, PEP 446), ``subprocess`` hands the slave to the
executable as its stdin, stdout and stderr in a new session, and one ioctl in
the child makes it the controlling terminal. ptyprocess (pexpect's spawner)
would bring its own fork, waitpid and blocking reads, which the driver
already does its own way (a pidfd, a process group, epoll in the process's
context); it would replace, not add.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

# A new terminal's size, as pexpect's (``dimensions=(24, 80)``): a pty is
# born 0x0, which programs that lay out their output read as "no size".
DEFAULT_ROWS = 24
DEFAULT_COLS = 80

# The in-band control messages of a pty port (the port's messages live here,
# not in protocol.py, which this task does not own).
RESIZE = "$port_resize"  # (RESIZE, rows, cols, reply_to, ref): to the port
RESIZED = "$port_resized"  # (RESIZED, ref, error_or_None): its answer


def open_terminal() -> tuple[int, int]:
    """(master, slave) of a new pseudo-terminal of the default size; both
    close on exec, so no other program inherits them."""
    master, slave = os.openpty()
    set_size(master, DEFAULT_ROWS, DEFAULT_COLS)
    return master, slave


def set_size(master: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ: the kernel sends SIGWINCH to the terminal's foreground group."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def take_as_controlling_terminal() -> None:
    """Run in the child between fork and exec (``preexec_fn``), after
    ``subprocess`` made it a session leader (``start_new_session``) and put
    the slave on fds 0-2: the slave becomes its controlling terminal, so it
    gets SIGWINCH, SIGINT from ^C, and /dev/tty works."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def eof_char(master: int) -> bytes:
    """The byte the terminal reads as end of input (VEOF, usually ^D)."""
    cc = termios.tcgetattr(master)[6]
    c = cc[termios.VEOF]
    return c if isinstance(c, bytes) else bytes([c])
