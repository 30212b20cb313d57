"""examples/drive_repl.py drives python3 -i on a pty with expect and every check passes (issue 14)."""

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "drive_repl.py")


def test_drive_repl_passes_each_check_against_an_interactive_python():
    done = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "ok  arithmetic -> 42",
        "ok  a terminal -> True",
        "ok  state kept -> 'OCCASIONAL'",
        "ok  an error -> ZeroDivisionError: division by zero",
        "ok  resized -> (120, 40)",
        "ok  exit status after ^D -> 0",
        "all checks passed",
    ]
