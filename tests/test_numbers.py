"""Number normalisation: one form (+E.164 digits) for every way a number is written."""

from __future__ import annotations

import pytest

from ccd.core.numbers import InvalidNumber, NumberPlan, normalize, plan_for_country, try_normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 1 234 5678", "+3612345678"),
        ("+36 1 234 5678", "+3612345678"),
        ("0036 1 234 5678", "+3612345678"),
        ("0036-1-234-5678", "+3612345678"),
        ("06-1/234-5678", "+3612345678"),
        ("(06 1) 234.5678", "+3612345678"),
        ("  +36 (1) 234 5678  ", "+3612345678"),
        ("(+36) 1 234 5678", "+3612345678"),
        ("+36\u00a01\u00a0234\u00a05678", "+3612345678"),  # no-break spaces from a spreadsheet
        ("3612345678", "+3612345678"),  # as a SIP trunk delivers it
        ("+36 (0)1 234 5678", "+3612345678"),
        ("06 30 123 4567", "+36301234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+123456789012345", "+123456789012345"),  # 15 digits: the E.164 maximum
    ],
)
def test_normalize_gives_one_form(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("- ( ) .", "no digits"),
        ("+", "no digits"),
        ("anonymous", "letter 'a'"),
        ("06 1 CALL NOW", "letter 'C'"),
        ("06 1 234 5678 ext 12", "letter 'e'"),
        ("06 1 234\n5678", "control character U+000A"),
        ("06 1 234\x005678", "control character U+0000"),
        ("06\u200b1 234 5678", "control character U+200B"),
        ("06 1 234 5678#", "character '#'"),
        ("\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "character"),  # Arabic-Indic
        ("36+12345678", "'+' at position 3"),
        ("++3612345678", "'+' at position 2"),
        ("+06 1 234 5678", "country code cannot start with 0"),
        ("06 1 23", "too short"),
        ("1234", "too short"),
        ("+1234567890123456", "too long: 16 digits"),
        ("1" * 65, "too long: 65 characters"),
    ],
)
def test_normalize_refuses_with_a_reason(raw, reason):
    with pytest.raises(InvalidNumber) as info:
        normalize(raw)
    assert reason in str(info.value)


def test_non_text_is_refused():
    with pytest.raises(InvalidNumber, match="expected text"):
        normalize(3612345678)  # type: ignore[arg-type]


def test_other_country_uses_trunk_prefix_zero():
    assert plan_for_country("44").trunk_prefix == "0"
    assert normalize("020 7946 0958", "44") == "+442079460958"
    assert normalize("06 1 234 5678", "36") == "+3612345678"


def test_plan_without_trunk_prefix_and_bare_national_numbers():
    plan = NumberPlan(country_code="39", trunk_prefix="", bare="national")
    # Italy keeps the leading 0 of area codes inside the national number.
    assert normalize("06 1234 5678", plan=plan) == "+390612345678"
    assert normalize("+39 06 1234 5678", plan=plan) == "+390612345678"


def test_plan_digit_limits_apply():
    plan = NumberPlan(min_digits=11, max_digits=11)
    assert normalize("06 30 123 4567", plan=plan) == "+36301234567"
    with pytest.raises(InvalidNumber, match="too short"):
        normalize("06 1 234 5678", plan=plan)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"country_code": "0"},
        {"country_code": "1234"},
        {"country_code": "3a"},
        {"trunk_prefix": "x"},
        {"international_prefix": ""},
        {"min_digits": 9, "max_digits": 8},
        {"max_digits": 16},
        {"bare": "local"},
    ],
)
def test_bad_plans_are_refused(kwargs):
    with pytest.raises(ValueError):
        NumberPlan(**kwargs)


@pytest.mark.parametrize("raw", ["anonymous", "", None, 42, "123"])
def test_try_normalize_answers_none_for_unusable_caller_numbers(raw):
    assert try_normalize(raw) is None


def test_try_normalize_passes_good_numbers():
    assert try_normalize("06 1 234 5678") == "+3612345678"
