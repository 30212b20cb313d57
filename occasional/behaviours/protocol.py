"""The in-band messages of the behaviours: what a Server and a Supervisor send
one another (and themselves) as ordinary messages, each a tuple led by a tag.

One home for every tag and layout (issue 11). A user's message that happens
to start with one of these strings is still a user message: a Server only
treats a tuple of the exact shape below as its own.
"""

from __future__ import annotations

CALL_TAG = "$call"  # ("$call", caller, ref, request): flat, one tuple to encode
CAST_TAG = "$cast"  # ("$cast", msg)
REPLY_TAG = "$reply"  # ("$reply", ref, value): the answer to occ.call
STARTED_TAG = "$started"  # ("$started", token): init returned
RESTART_TAG = "$restart"  # ("$restart", child key): a Supervisor's backoff timer is due
ERROR_TAG = "$error"  # ("$error", exception): a Supervisor's call handler failed
