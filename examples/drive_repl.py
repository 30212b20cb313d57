"""Drive an interactive program on a terminal with expect, as a test of it would.

`python examples/drive_repl.py` starts `python3 -i` on a pseudo-terminal (so it
shows its `>>>` prompt, echoes what it reads and sees a terminal size),
checks a few answers, resizes the terminal, and ends it with ^D. Each check
prints one line; the last is "all checks passed".
"""

import os
import re
import sys

import occasional
from occasional import ports


def ask(repl: occasional.Port, line: str) -> str:
    """Send ``line`` as typed, return what the REPL printed before its next prompt."""
    occasional.send(repl, line.encode() + b"\n")
    ports.expect(repl, re.escape(line) + "\r\n", timeout=10)  # the terminal echoes the line first
    return ports.expect(repl, r"(.*)\r\n>>> ", timeout=10).group(1)


def check(what: str, got: str, want: str) -> None:
    assert got == want, f"{what}: got {got!r}, want {want!r}"
    print(f"ok  {what} -> {got}")


def main() -> None:
    env = {**os.environ, "PYTHONSTARTUP": ""}
    repl = ports.open_port([sys.executable, "-i", "-q"], pty=True, env=env)
    ports.expect(repl, ">>> ", timeout=10)
    check("arithmetic", ask(repl, "6 * 7"), "42")
    check("a terminal", ask(repl, "import sys; sys.stdin.isatty()"), "True")
    check("state kept", ask(repl, "x = 'occasional'; x.upper()"), "'OCCASIONAL'")
    check("an error", ask(repl, "1 / 0"), "ZeroDivisionError: division by zero")
    ports.resize(repl, 40, 120)
    check("resized", ask(repl, "import os; tuple(os.get_terminal_size())"), "(120, 40)")
    ports.close(repl)  # ^D at the prompt
    _, status = occasional.receive((repl, ("exit_status", occasional.ANY)), timeout=10)
    check("exit status after ^D", str(status[1]), "0")
    print("all checks passed")


if __name__ == "__main__":
    occasional.run(main)
