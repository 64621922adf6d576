"""Callback rules (R-OVERFLOW, R-CALLBACK), pure: number policy, retries, business hours."""

from __future__ import annotations

from datetime import UTC, datetime

import msgpack
import pytest

from ccd.config import Config, ConfigError
from ccd.config.rules import number_rules_from_config, rules_from_config
from ccd.core.business_hours import in_business_hours, next_opening, parse_business_hours
from ccd.core.callback import (
    Attempt,
    CallbackRequest,
    CallbackRules,
    IllegalStatusChange,
    NumberRefused,
    NumberRules,
    OpenLimitReached,
    Outcome,
    Status,
    after_attempt,
    check_number,
    check_open_limit,
    is_due,
    new_request,
    with_status,
)
from ccd.core.queue import queue_order_key

HU = NumberRules()


def at(*args: int) -> float:
    """An instant given in UTC."""
    return datetime(*args, tzinfo=UTC).timestamp()


# --- number policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 1 234 5678", "+3612345678"),
        ("06301234567", "+36301234567"),
        ("+36301234567", "+36301234567"),
        ("0036301234567", "+36301234567"),
        ("36301234567", "+36301234567"),  # a SIP trunk's caller number
        ("06801234567", "+36801234567"),  # toll-free is fine
    ],
)
def test_good_numbers_are_normalised(raw, expected):
    assert check_number(raw, HU) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("--", "empty"),
        ("0630*1234567", "not_digits"),  # DTMF star
        ("06301234567#", "not_digits"),  # a terminator that reached the number
        ("#", "not_digits"),
        ("06A01234567", "not_digits"),  # DTMF letters
        ("06 30 abc", "not_digits"),
        ("06\n301234567", "not_digits"),
        ("36+301234567", "not_digits"),  # + only at the start
        ("112", "emergency"),
        ("104", "emergency"),
        ("105", "emergency"),
        ("107", "emergency"),
        ("911", "emergency"),
        ("999", "emergency"),
        ("06112", "emergency"),
        ("+36 112", "emergency"),
        ("0036107", "emergency"),
        ("0123456789", "invalid"),  # neither 06 nor 00: a country code starting with 0
        ("0612345", "too_short"),
        ("061234567", "too_short"),  # +36 and 7 digits
        ("+3612345678901234", "too_long"),
        ("1" * 70, "too_long"),
        ("06901234567", "premium"),
        ("+36 91 123 4567", "premium"),
        ("+441234567890", "international"),
        ("00491701234567", "international"),
        ("41791234567", "international"),  # bare digits are read as international
    ],
)
def test_refused_numbers_name_the_reason(raw, reason):
    with pytest.raises(NumberRefused) as info:
        check_number(raw, HU)
    assert info.value.reason == reason
    assert info.value.message


def test_allowed_prefixes_override_international_premium_and_blocked_not_emergency():
    rules = NumberRules(
        allowed_prefixes=("+44", "+3690"),
        blocked_prefixes=("+3651", "+3690"),
        emergency_numbers=("112", "4412"),
    )
    assert check_number("+441234567890", rules) == "+441234567890"
    assert check_number("06901234567", rules) == "+36901234567"
    with pytest.raises(NumberRefused) as info:
        check_number("06511234567", rules)
    assert info.value.reason == "blocked"
    with pytest.raises(NumberRefused) as info:
        check_number("112", rules)
    assert info.value.reason == "emergency"


def test_international_and_premium_can_be_allowed_by_configuration():
    rules = NumberRules(allow_international=True, premium_prefixes=())
    assert check_number("+441234567890", rules) == "+441234567890"
    assert check_number("06901234567", rules) == "+36901234567"
    assert check_number("06901234567", NumberRules(premium_prefixes=()))


def test_length_limits_are_configurable():
    rules = NumberRules(min_digits=8, max_digits=11)
    with pytest.raises(NumberRefused) as info:
        check_number("0612345", rules)
    assert info.value.reason == "too_short"
    assert check_number("06123456", rules) == "+36123456"
    with pytest.raises(NumberRefused) as info:
        check_number("063012345678", rules)
    assert info.value.reason == "too_long"


def test_number_rules_refuse_a_bad_configuration():
    with pytest.raises(ValueError):
        NumberRules(blocked_prefixes=("3690",))
    with pytest.raises(ValueError):
        NumberRules(min_digits=12, max_digits=10)
    with pytest.raises(ValueError):
        NumberRules(default_country_code="0")


def test_open_limit():
    check_open_limit(1, 2)
    check_open_limit(50, None)
    with pytest.raises(OpenLimitReached) as info:
        check_open_limit(2, 2)
    assert (info.value.open_count, info.value.limit) == (2, 2)


# --- requests ----------------------------------------------------------

T0 = at(2024, 5, 6, 8, 0)  # a Monday


def request(**changes) -> CallbackRequest:
    values = dict(
        request_id="cb1",
        number="+36301234567",
        queue="sales",
        created_at=T0,
        order_key=queue_order_key(0, T0 - 30),
        caller_uuid="uuid-1",
        strategy="active",
    )
    values.update(changes)
    return new_request(values.pop("request_id"), values.pop("number"), values.pop("queue"),
                       **values)  # fmt: skip


def working(req: CallbackRequest) -> CallbackRequest:
    return with_status(req, Status.WORKING, req.created_at)


def test_request_round_trips_through_msgpack():
    req = working(request(caller_number="+3612345678"))
    req = after_attempt(req, Attempt(T0 + 5, "no_answer", "alice", "NO_ANSWER"), T0 + 5,
                        CallbackRules())  # fmt: skip
    packed = msgpack.packb(req.to_dict(), use_bin_type=True)
    back = CallbackRequest.from_dict(msgpack.unpackb(packed, raw=False))
    assert back == req
    assert back.attempts[0].agent == "alice" and back.attempts[0].outcome is Outcome.NO_ANSWER


def test_request_refuses_unnormalised_numbers_and_unsafe_ids():
    with pytest.raises(ValueError):
        request(number="06301234567")
    with pytest.raises(ValueError):
        request(request_id="a:b")
    with pytest.raises(ValueError):
        request(strategy="sometimes")


def test_retry_waits_min_interval_and_ends_unreached_after_max_attempts():
    rules = CallbackRules(max_attempts=3, min_interval=600)
    req = request()
    assert is_due(req, T0)
    now = T0
    for number in (1, 2):
        req = after_attempt(working(req), Attempt(now, Outcome.NO_ANSWER), now, rules)
        assert req.status is Status.PENDING
        assert req.next_due_at == now + 600
        assert not is_due(req, now + 599.999)
        assert is_due(req, now + 600)
        assert len(req.attempts) == number
        now += 600
    req = after_attempt(working(req), Attempt(now, Outcome.BUSY), now, rules)
    assert req.status is Status.UNREACHED
    assert req.next_due_at is None
    assert not is_due(req, now + 10**9)
    assert [a.outcome for a in req.attempts] == ["no_answer", "no_answer", "busy"]


def test_outcomes_that_do_not_use_up_attempts():
    rules = CallbackRules(max_attempts=1, min_interval=600)
    req = after_attempt(working(request()), Attempt(T0, Outcome.ABORTED), T0, rules)
    assert req.status is Status.PENDING and req.next_due_at == T0  # our fault: at once
    assert after_attempt(working(req), Attempt(T0, "connected"), T0, rules).status == "done"
    assert after_attempt(working(req), Attempt(T0, "queued"), T0, rules).status == "done"
    assert after_attempt(working(req), Attempt(T0, "declined"), T0, rules).status == "declined"
    dnc = after_attempt(working(req), Attempt(T0, "do_not_call"), T0, rules)
    assert dnc.status == "cancelled"


def test_operator_retry_gives_a_fresh_set_of_attempts_and_keeps_history():
    rules = CallbackRules(max_attempts=1, min_interval=60)
    req = after_attempt(working(request()), Attempt(T0, "no_answer"), T0, rules)
    assert req.status is Status.UNREACHED
    req = with_status(req, Status.PENDING, T0 + 1000)
    assert is_due(req, T0 + 1000) and len(req.attempts) == 1
    req = after_attempt(working(req), Attempt(T0 + 1000, "failed"), T0 + 1000, rules)
    assert req.status is Status.UNREACHED and len(req.attempts) == 2


def test_illegal_status_changes_are_refused():
    with pytest.raises(IllegalStatusChange):
        with_status(request(), Status.DONE, T0)  # pending → done without working
    done = with_status(working(request()), Status.DONE, T0)
    with pytest.raises(IllegalStatusChange):
        with_status(done, Status.PENDING, T0)
    with pytest.raises(IllegalStatusChange):
        after_attempt(request(), Attempt(T0, "connected"), T0, CallbackRules())


# --- business hours ----------------------------------------------------------


def test_parse_business_hours():
    windows = parse_business_hours(
        ["mon-fri 08:00-18:00", "sat,sun 10:00-24:00", "daily 7:30-8:00"]
    )
    assert windows[0].weekdays == frozenset({0, 1, 2, 3, 4})
    assert (windows[0].start, windows[0].end) == (8 * 3600, 18 * 3600)
    assert windows[1].weekdays == frozenset({5, 6}) and windows[1].end == 86400
    assert windows[2].weekdays == frozenset(range(7)) and windows[2].start == 7.5 * 3600


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        ("mon-fri", "DAYS HH:MM-HH:MM"),
        ("monday 08:00-18:00", "days are"),
        ("fri-mon 08:00-18:00", "runs forward"),
        ("mon 18:00-08:00", "over midnight"),
        ("mon 08:00-25:00", "time of day"),
        ("mon 08:60-09:00", "time of day"),
    ],
)
def test_bad_business_hours_say_why(entry, hint):
    with pytest.raises(ValueError, match=hint):
        parse_business_hours([entry])


BUDAPEST = CallbackRules(business_hours=parse_business_hours(["mon-fri 08:00-18:00"]))


def test_business_hours_follow_the_local_wall_clock_across_dst():
    # Winter (CET, UTC+1) and summer (CEST, UTC+2) Mondays.
    assert not in_business_hours(at(2024, 1, 8, 6, 59), BUDAPEST)  # 07:59 CET
    assert in_business_hours(at(2024, 1, 8, 7, 0), BUDAPEST)  # 08:00 CET
    assert in_business_hours(at(2024, 7, 8, 6, 0), BUDAPEST)  # 08:00 CEST
    assert not in_business_hours(at(2024, 7, 8, 16, 0), BUDAPEST)  # 18:00 CEST
    assert in_business_hours(at(2024, 1, 8, 16, 59, 59), BUDAPEST)  # 17:59:59 CET
    assert not in_business_hours(at(2024, 1, 6, 10, 0), BUDAPEST)  # Saturday


def test_next_opening_over_the_spring_dst_weekend():
    friday_evening = at(2024, 3, 29, 17, 0)  # 18:00 CET, closed
    # Clocks go forward on Sunday 31 March: Monday 08:00 is CEST, 06:00 UTC (not 07:00).
    assert next_opening(friday_evening, BUDAPEST) == at(2024, 4, 1, 6, 0)
    assert next_opening(at(2024, 4, 1, 6, 30), BUDAPEST) == at(2024, 4, 1, 6, 30)  # open


def test_next_opening_over_the_autumn_dst_weekend():
    assert next_opening(at(2024, 10, 25, 16, 0), BUDAPEST) == at(2024, 10, 28, 7, 0)


def test_a_window_starting_inside_the_dst_gap_opens_at_the_transition():
    rules = CallbackRules(business_hours=parse_business_hours(["sun 02:30-05:00"]))
    # 2024-03-31: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 never happens.
    opening = next_opening(at(2024, 3, 30, 12, 0), rules)
    assert abs(opening - at(2024, 3, 31, 1, 0)) < 0.01
    assert in_business_hours(opening + 0.01, rules)
    assert not in_business_hours(at(2024, 3, 31, 0, 59), rules)


def test_no_windows_means_always_open():
    rules = CallbackRules()
    assert in_business_hours(at(2024, 1, 7, 3, 0), rules)
    assert next_opening(at(2024, 1, 7, 3, 0), rules) == at(2024, 1, 7, 3, 0)


def test_callback_rules_refuse_unknown_time_zones():
    with pytest.raises(ValueError, match="time zone"):
        CallbackRules(timezone="Mars/Olympus")


# --- from the configuration ----------------------------------------------------------


def test_rules_from_config_with_a_queue_override():
    config = Config.from_dict(
        {
            "callback": {
                "max_attempts": 5,
                "min_interval": 120,
                "business_hours": ["mon-fri 09:00-17:00"],
                "timezone": "Europe/Warsaw",
                "allowed_prefixes": ["+48"],
                "premium_prefixes": [],
            },
            "queues": {
                "sales": {"business_hours": ["daily 00:00-24:00"]},
                "support": {},
            },
        },
        env={},
    )
    sales = rules_from_config(config, "sales")
    support = rules_from_config(config, "support")
    assert (sales.max_attempts, sales.min_interval, sales.timezone) == (5, 120, "Europe/Warsaw")
    assert in_business_hours(at(2024, 1, 7, 3, 0), sales)  # Sunday night: sales is 24/7
    assert not in_business_hours(at(2024, 1, 7, 3, 0), support)
    numbers = number_rules_from_config(config)
    assert check_number("+48123456789", numbers) == "+48123456789"
    assert check_number("06901234567", numbers) == "+36901234567"


def test_callback_defaults():
    config = Config.from_dict({}, env={})
    assert config.callback.max_attempts == 3
    assert config.callback.min_interval == 600
    assert config.callback.agent_poll_interval == 60
    assert config.callback.max_open_per_caller == 2
    assert config.callback.offer_retries == 2
    assert config.callback.timezone == "Europe/Budapest"
    assert number_rules_from_config(config) == NumberRules()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"callback": {"business_hours": ["mon-fri 8-18"]}}, "callback.business_hours:"),
        ({"callback": {"business_hours": "mon-fri 08:00-18:00"}}, "callback.business_hours:"),
        ({"callback": {"timezone": "Europe/Nowhere"}}, "callback.timezone: unknown"),
        ({"callback": {"blocked_prefixes": ["0690"]}}, "callback.blocked_prefixes:"),
        ({"callback": {"allow_international": "yes"}}, "callback.allow_international:"),
        ({"callback": {"min_digits": 12, "max_digits": 10}}, "callback.max_digits:"),
        ({"callback": {"max_attempts": 0}}, "callback.max_attempts:"),
        ({"queues": {"q": {"business_hours": ["sun 10:00-09:00"]}}}, "queues.q.business_hours:"),
    ],
)
def test_bad_callback_configuration_names_the_key(table, problem):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(table, env={})
    assert problem in str(info.value)
