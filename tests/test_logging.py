"""Logging: JSON lines with bound context, stdlib routed in, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from ccd.logging import configure_logging


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging():
    """Leave structlog and the root logger as the other test files expect them."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stream():
    out = io.StringIO()
    configure_logging("json", "info", out)
    return out


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_event_level_timestamp_and_bound_context(stream):
    structlog.contextvars.bind_contextvars(call="4e2a", agent="alice", queue="sales")
    structlog.get_logger().info("call.offered", ring_time=15)
    structlog.contextvars.clear_contextvars()
    structlog.get_logger().info("esl.connected")
    first, second = lines(stream)
    assert first["event"] == "call.offered"
    assert first["level"] == "info"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert (first["call"], first["agent"], first["queue"]) == ("4e2a", "alice", "sales")
    assert first["ring_time"] == 15
    assert "call" not in second


def test_level_filters(stream):
    log = structlog.get_logger()
    log.debug("noise.debug")
    log.warning("store.schema_mismatch")
    assert [e["event"] for e in lines(stream)] == ["store.schema_mismatch"]


def test_stdlib_logging_goes_to_the_same_json_stream(stream):
    structlog.contextvars.bind_contextvars(call="4e2a")
    logging.getLogger("greenswitch").warning("socket closed by %s", "peer")
    logging.getLogger("greenswitch").debug("below the level")
    (entry,) = lines(stream)
    assert entry["event"] == "socket closed by peer"
    assert entry["logger"] == "greenswitch"
    assert entry["level"] == "warning"
    assert entry["call"] == "4e2a"


def test_secret_keys_are_redacted(stream):
    structlog.get_logger().info(
        "esl.connecting", password="ClueCon", api_token="t0k", nested={"secret": "s"}
    )
    (entry,) = lines(stream)
    assert entry["password"] == "***"
    assert entry["api_token"] == "***"
    assert entry["nested"] == {"secret": "***"}
    assert "ClueCon" not in stream.getvalue()


def test_credentials_in_urls_and_esl_auth_lines_are_redacted(stream):
    structlog.contextvars.bind_contextvars(target="redis://ccd:hunter2@db:6379/0")
    log = structlog.get_logger()
    log.info("redis.connecting", url="redis://:hunter2@db:6379/0", hosts=["redis://a:hunter2@b"])
    log.info("esl.sent", command="auth hunter2 with spaces")
    logging.getLogger("redis").error("cannot reach redis://x:hunter2@db")
    assert "hunter2" not in stream.getvalue()
    assert "with spaces" not in stream.getvalue()
    first = lines(stream)[0]
    assert first["url"] == "redis://:***@db:6379/0"
    assert first["target"] == "redis://ccd:***@db:6379/0"
    assert lines(stream)[1]["command"] == "auth ***"


def test_exceptions_are_rendered_and_redacted(stream):
    try:
        raise ConnectionError("redis://u:hunter2@db refused")
    except ConnectionError:
        structlog.get_logger().exception("redis.failed")
    (entry,) = lines(stream)
    assert "ConnectionError" in entry["exception"]
    assert "hunter2" not in stream.getvalue()


def test_auto_is_console_on_a_terminal_and_json_otherwise():
    tty = TtyStream()
    configure_logging("auto", "info", tty)
    structlog.get_logger().info("esl.connected", password="ClueCon")
    assert "esl.connected" in tty.getvalue()
    assert not tty.getvalue().lstrip().startswith("{")
    assert "ClueCon" not in tty.getvalue()

    pipe = io.StringIO()
    configure_logging("auto", "info", pipe)
    structlog.get_logger().info("esl.connected")
    assert json.loads(pipe.getvalue())["event"] == "esl.connected"
    # Reconfiguring replaced our stdlib handler instead of adding a second one.
    logging.getLogger("x").warning("once")
    assert tty.getvalue().count("once") == 0
    assert pipe.getvalue().count("once") == 1


def test_bad_format_or_level_is_refused():
    with pytest.raises(ValueError):
        configure_logging("xml", "info", io.StringIO())
    with pytest.raises(ValueError):
        configure_logging("json", "verbose", io.StringIO())


def test_a_value_the_fast_encoder_refuses_still_makes_one_json_line():
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    structlog.get_logger().info("odd.values", big=2**70, obj=object(), keys={1: "one"})
    (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["big"] == 2**70 and entry["keys"] == {"1": "one"}
    assert entry["obj"].startswith("<object object")
    assert entry["timestamp"].endswith("Z") and len(entry["timestamp"]) == 27
