"""The worker of examples/services.toml: polls a URL and prints what it got, one line a poll.

While `web` is down (kill -9 it and watch), the lines say so; once the
supervisor has started it again, they show 200 again.
"""

import os
import time
import urllib.error
import urllib.request


def poll(url: str, every_s: float) -> None:
    label = os.environ.get("WORKER_LABEL", "worker")
    print(f"{label}: polling {url} every {every_s} s, as pid {os.getpid()}")
    while True:
        try:
            with urllib.request.urlopen(url, timeout=every_s) as reply:
                got = f"{reply.status} ({len(reply.read())} bytes)"
        except (urllib.error.URLError, OSError) as e:
            got = f"no answer: {getattr(e, 'reason', e)}"
        print(f"{time.strftime('%H:%M:%S')} {label}: GET {url} -> {got}")
        time.sleep(every_s)
