"""A user's module of programs, as ``occasional gateway --programs http_registered`` imports it."""

from __future__ import annotations

import http_programs

http_programs.register_programs()
