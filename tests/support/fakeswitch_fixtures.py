"""Fixture plugin: a running fake FreeSWITCH on a free loopback port.

``fakeswitch`` starts a :class:`~ccd.fakeswitch.switch.FakeSwitch` (the repo's
``freeswitch_conf/``, time scale 50, ESL password ``ClueCon``) and stops it
after the test. Parametrize indirectly to change its arguments::

    @pytest.mark.parametrize("fakeswitch", [{"time_scale": 100}], indirect=True)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ccd.fakeswitch.switch import FakeSwitch

FAKESWITCH_DEFAULTS = {"time_scale": 50.0, "password": "ClueCon", "host": "127.0.0.1", "port": 0}


@pytest.fixture
def fakeswitch(request: pytest.FixtureRequest) -> Iterator[FakeSwitch]:
    kwargs = {**FAKESWITCH_DEFAULTS, **getattr(request, "param", {})}
    switch = FakeSwitch(**kwargs)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()
