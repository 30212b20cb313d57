"""Record the journals in ``journals/`` from ``durable_programs.py`` (run by hand, on purpose).

    .venv/bin/python tests/durable/record_journals.py

Each journal is recorded in a fresh runtime on a temporary file, then copied
here with its WAL folded in, as one self-contained file. ``shop.sqlite`` holds
three processes: "order-1" (finished), "waiting" (unfinished, waiting for a
message) and "restock", recorded from a copy of ``durable_programs.py`` whose
``restock`` still called ``release_stock`` first, so that the current code
parts from it: its replay must raise NonDeterminism.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OLD_RESTOCK = (
    "    held = durable.step(hold_stock, item)\n",
    "    durable.step(release_stock, item)\n    held = durable.step(hold_stock, item)\n",
)

RECORD = textwrap.dedent(
    """\
    import sys

    import occasional as occ
    from occasional import durable

    import durable_programs as p


    def main():
        me = occ.slf()
        order = durable.spawn("order-1", p.checkout, "order-1", me)
        occ.send(order, ("amount", 250))
        occ.send(order, ("items", ["tea", "cake"]))
        assert durable.result("order-1", timeout=30)[0] == "ok"
        occ.receive(("receipt", "order-1", occ.ANY), timeout=30)
        durable.spawn("restock", p.restock, "tea")
        assert durable.result("restock", timeout=30)[0] == "ok"
        waiting = durable.spawn("waiting", p.wait_for_more, 2, me)
        occ.send(waiting, "first")
        occ.send(waiting, "second")
        occ.receive(("waiting", 2), timeout=30)
        return "recorded"


    print(occ.run(main, journal=sys.argv[1]))
    """
)


def record(module_text: str, out: str) -> None:
    d = tempfile.mkdtemp(prefix="occ-record-")
    try:
        with open(os.path.join(d, "durable_programs.py"), "w") as f:
            f.write(module_text)
        with open(os.path.join(d, "record.py"), "w") as f:
            f.write(RECORD)
        journal = os.path.join(d, "journal.sqlite")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([d, ROOT]))
        subprocess.run([sys.executable, os.path.join(d, "record.py"), journal], check=True, cwd=d, env=env)
        with sqlite3.connect(journal) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the repository
        shutil.copyfile(journal, out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    with open(os.path.join(HERE, "durable_programs.py")) as f:
        current = f.read()
    assert current.count(OLD_RESTOCK[0]) == 1
    os.makedirs(os.path.join(HERE, "journals"), exist_ok=True)
    record(current.replace(*OLD_RESTOCK), os.path.join(HERE, "journals", "shop.sqlite"))


if __name__ == "__main__":
    main()
