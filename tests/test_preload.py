"""What the forkserver imports once for every process to share (issue 15).

A port's process runs the port driver; imported after each fork, it was most
of a port's start (25-35 ms without bytecode caches). The forkserver imports
it before its first fork, so every process finds it loaded.
"""

from __future__ import annotations

import sys

import occasional as occ


def loaded_in_a_new_process() -> bool:
    return "occasional.ports.driver" in sys.modules


def test_a_new_process_finds_the_port_driver_already_imported_by_the_forkserver():
    def main():
        pid, ref = occ.spawn_monitor(loaded_in_a_new_process)
        return occ.receive(("DOWN", ref, occ.ANY, occ.ANY))[3]

    assert occ.run(main) == ("ok", True)
