"""Shared fixtures live in tests/support/ as pytest plugins, one module per concern."""

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.fakeswitch_fixtures",
]
