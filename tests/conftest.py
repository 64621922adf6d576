"""Shared fixtures live in tests/support/ as pytest plugins, one module per concern.

The daemon runs on gevent; patch the standard library before anything imports
sockets so redis-py, the fake FreeSWITCH and the tests cooperate in one process.
"""

from gevent import monkey

monkey.patch_all()

import pytest  # noqa: E402  (after patching, as everything else)
import structlog  # noqa: E402

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.fakeswitch_fixtures",
    "tests.support.daemon_fixtures",
    "tests.support.cli_fixtures",
]


@pytest.fixture(autouse=True)
def _isolated_structlog():
    """A test (or a script it imports) that configures structlog must not change what
    later tests see: every test starts from structlog's defaults and no bound context."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
