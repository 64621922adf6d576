"""A resync's snapshot of FreeSWITCH: the ``show ... as json`` rows (ccd.core.events.show_rows)
as FreeSWITCH 1.10.12 wrote them, and the reader that asks beside the dispatcher
(ccd.adapters.snapshot) and gives way to it while it parses."""

from __future__ import annotations

import json

import gevent
import pytest

from ccd.adapters.esl_connection import EslDisconnected
from ccd.adapters.snapshot import CHANNEL_KEYS, QUESTIONS, Snapshot, SnapshotReader
from ccd.core.events import show_rows
from tests.support.captures import capture_names, load_capture


def recorded_answers() -> list[tuple[str, str]]:
    """(command, body) of every ``api show ... as json`` in the recordings."""
    found = []
    for name in capture_names():
        for exchange in load_capture(name):
            line = exchange.line
            if line.startswith("api show") and line.endswith(" as json"):
                for frame in exchange.frames:
                    if frame.content_type == "api/response":
                        found.append((line, frame.body_text()))
    return found


def test_every_recorded_answer_of_freeswitch_gives_the_rows_json_gives():
    answers = recorded_answers()
    assert len(answers) >= 10 and any('"rows"' in body for _, body in answers)
    for command, body in answers:
        assert list(show_rows(body)) == json.loads(body).get("rows", []), command


@pytest.mark.parametrize(
    "body",
    [
        "-ERR no such command",
        "",
        '{"row_count":2,"rows":[{"uuid":"a"},{"uuid":',  # cut short
        '{"row_count":2,"rows":[{"uuid":"a"} {"uuid":"b"}]}',
        '{"row_count":1,"rows":[{"uuid":"a"}]} trailing',
        '{"rows":[]}',
    ],
)
def test_an_answer_that_is_not_a_show_document_is_refused(body):
    with pytest.raises(ValueError):
        list(show_rows(body))


class Switch:
    """What the reader needs of the ESL client: answers per question, or an error."""

    def __init__(self, answers: dict[str, str] | Exception) -> None:
        self.answers = answers
        self.asked: list[tuple[str, ...]] = []

    def api_aside(self, commands, timeout=None):
        self.asked.append(tuple(commands))
        if isinstance(self.answers, Exception):
            raise self.answers
        return [self.answers[c] for c in commands]


def document(rows: list[dict]) -> str:
    return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))


def read(switch: Switch, on_deliver=lambda: None) -> Snapshot:
    got: list[Snapshot] = []

    def deliver(answer: Snapshot) -> None:
        on_deliver()
        got.append(answer)

    SnapshotReader(switch, deliver).ask("t1")
    gevent.wait(timeout=5)
    (answer,) = got
    return answer


def channel_rows(count: int) -> list[dict]:
    """Rows as FreeSWITCH 1.10.12 writes them: the recorded row's columns, one per channel."""
    for _, body in recorded_answers():
        rows = json.loads(body).get("rows", [])
        if rows and "application_data" in rows[0]:
            return [dict(rows[0], uuid=f"c{i}", name=f"sofia/internal/{1000 + i}@h")
                    for i in range(count)]  # fmt: skip
    raise AssertionError("no show channels answer in the recordings")


def test_the_reader_delivers_both_answers_and_gives_way_while_it_parses():
    channels = channel_rows(300)
    phones = [{"reg_user": str(1000 + i), "realm": "ccd.local", "url": "sofia/internal/sip:x"}
              for i in range(5000)]  # fmt: skip
    switch = Switch({QUESTIONS[0]: document(channels), QUESTIONS[1]: document(phones)})
    turns: list[None] = []
    others = gevent.spawn(lambda: [turns.append(gevent.sleep(0)) for _ in range(1000)])
    # Each pass of the event loop (when it polls the sockets: the ESL reader, a dispatcher
    # waiting for Redis) is counted by a prepare watcher.
    polls: list[None] = []
    watcher = gevent.get_hub().loop.prepare(ref=False)
    watcher.start(lambda: polls.append(None))
    seen_at_delivery: list[tuple[int, int]] = []
    try:
        answer = read(switch, lambda: seen_at_delivery.append((len(turns), len(polls))))
    finally:
        watcher.stop()
    others.join()
    assert switch.asked == [QUESTIONS]
    # What the resync reads of each row is kept, not the row: 20,000 whole rows freed in
    # one go held the dispatcher tens of milliseconds.
    assert answer.registrations == [p["reg_user"] for p in phones]
    assert answer.channels == [{k: c[k] for k in CHANNEL_KEYS} for c in channels]
    assert len(channels[0]) > 3 * len(CHANNEL_KEYS)
    # The other greenlet (the dispatcher) had its turns while 5,300 rows were parsed, and
    # the loop polled the sockets at each: sleep(0) let the loop go 13-30 ms unpolled.
    turned, polled = seen_at_delivery[0]
    assert turned >= 3 and polled >= 3, (turned, polled)


def test_a_lost_connection_or_a_garbled_answer_is_an_error_not_a_snapshot():
    answer = read(Switch(EslDisconnected("connection refused")))
    assert answer.token == "t1" and "connection refused" in answer.error
    # Not an ESL error (a bug): still an answer, so the resync asks again next time.
    assert "boom" in read(Switch(RuntimeError("boom"))).error
    assert answer.channels == [] and answer.registrations == []
    garbled = Switch({QUESTIONS[0]: document([]), QUESTIONS[1]: '{"row_count":1,"rows":[{'})
    answer = read(garbled)
    assert answer.error.startswith("show registrations as json:") and answer.channels == []
