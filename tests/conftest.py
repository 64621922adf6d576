"""Shared fixtures live in tests/support/ as pytest plugins, one module per concern.

The daemon runs on gevent; patch the standard library before anything imports
sockets so redis-py, the fake FreeSWITCH and the tests cooperate in one process.
"""

from gevent import monkey

monkey.patch_all()

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.fakeswitch_fixtures",
    "tests.support.daemon_fixtures",
]
