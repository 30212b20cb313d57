"""The files a node's Erlang VM needs: its compiled code and its cookie."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

_SOURCE = Path(__file__).with_name("erlang") / "occ_dist.erl"


def beam_directory() -> str:
    """Where ``occ_dist.beam`` is, compiled from its source if need be (once per
    version of the source: the directory is named by its hash)."""
    erlc = shutil.which("erlc")
    if erlc is None:
        raise RuntimeError(
            "node= needs Erlang/OTP's erl and erlc, which are not on PATH; install them "
            "(Debian: apt-get install erlang-base)"
        )
    source = _SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "occasional" / "erlang"
    target = cache / hashlib.sha256(source).hexdigest()[:16]
    if (target / "occ_dist.beam").exists():
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        import tempfile

        scratch = stack.enter_context(tempfile.TemporaryDirectory(dir=cache))
        done = subprocess.run([erlc, "-o", scratch, str(_SOURCE)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"erlc could not compile {_SOURCE}: {done.stderr or done.stdout}")
        try:
            os.rename(scratch, target)  # atomic: another runtime may compile it at the same time
        except OSError:
            if not (target / "occ_dist.beam").exists():
                raise
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            os.mkdir(scratch)  # for TemporaryDirectory's cleanup
    return str(target)


def cookie(options: dict[str, Any]) -> str:
    """The node's secret: cookie=, else $OCC_COOKIE, else ~/.occasional.cookie
    (made, 0600, with a random secret, if it does not exist)."""
    given = options.get("cookie") or os.environ.get("OCC_COOKIE")
    if given:
        return str(given)
    path = Path.home() / ".occasional.cookie"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text().strip()
        if not text:
            raise RuntimeError(f"{path} is empty; put a secret in it, or pass cookie=") from None
        return text
    import secrets

    secret = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
