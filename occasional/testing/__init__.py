"""occasional's test support: a pytest plugin, opt-in, and helpers for tests.

- ``occasional.testing.plugin``: the pytest plugin. A timeout for each phase of a
  test, and a test that leaves a process, zombie or fd behind fails, naming it.
  Installing occasional does not load it (there is no ``pytest11`` entry point);
  opt in with ``pytest -p occasional.testing.plugin`` or, in a top-level
  ``conftest.py``, ``pytest_plugins = ["occasional.testing.plugin"]``. Its checks:
  ``timeouts`` and ``leaks`` (generic), ``reaper`` (pytest as a subreaper, for the
  orphans of a killed runtime).
- ``occasional.testing.remote``: :func:`run`, ``occasional.run`` for tests; an assertion
  that fails in a process of the runtime fails the test with that process's traceback.
  It needs no plugin.

Importing this package imports pytest.
"""

from .remote import run as run
from .timeouts import TimeoutExceeded as TimeoutExceeded

__all__ = ["run", "TimeoutExceeded"]
