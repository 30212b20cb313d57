"""``occasional up``: a services file, run as a tree of supervised ports.

The file's format and how a service is read are in :mod:`occasional.up.config`,
the checks of its values in :mod:`occasional.up.checks`; running the plan (a
Supervisor of ports and function services, and their logs) in
:mod:`occasional.up.serve`. This package sits above ports and behaviours and
nothing below it imports it (docs/architecture.md, tests/test_architecture.py).
"""

from .config import ConfigError as ConfigError, load as load
from .serve import serve as serve
