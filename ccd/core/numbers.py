"""Phone numbers in ONE normalised form: ``+`` and E.164 digits (``+3612345678``).

Customers, contact history, callbacks and sticky bindings are all keyed by this form, so a
number written ``06 1 234 5678`` in a CSV file finds the caller whose switch reports
``+3612345678``. Pure: no I/O.

Rules of :func:`normalize`, in order
------------------------------------
1. The input must be a string of at most ``MAX_RAW_LENGTH`` characters; surrounding whitespace
   is ignored; empty (or only separators) is refused.
2. Control and format characters (newline, tab, NUL, zero-width...) are refused, never
   silently dropped: such a value did not come from a person typing a number.
3. Separators are accepted and dropped: space (any Unicode space), ``-``, ``.``, ``(``, ``)``
   and ``/`` (common in written Hungarian and German numbers: ``06-1/234-5678``). After a
   ``+``, a ``(0)`` is the optional trunk digit of the written style ``+44 (0)20 7946 0958``
   and is dropped with its parentheses.
4. A ``+`` may appear only as the first character that is not a separator; it means the digits
   that follow start with the country code.
5. Any other character is refused: letters (no vanity numbers, no ``ext. 12``), ``*``/``#``,
   non-ASCII digits.
6. Without ``+``: digits starting with the international prefix (``00``) are international
   (the prefix is dropped); else digits starting with the national trunk prefix (``06`` in
   Hungary, ``0`` in most of Europe) are national (the trunk prefix is replaced by the country
   code); else the digits are taken as international without the ``+`` (as SIP trunks often
   deliver caller numbers: ``3612345678``), or, with ``NumberPlan(bare="national")``, as a
   national number without its trunk prefix.
7. The result has ``min_digits``..``max_digits`` digits after the ``+`` (E.164 allows 15) and
   does not start with ``0`` (no country code does).

Anything refused raises :class:`InvalidNumber` whose message says why. Code on the call path,
where a caller number may be ``anonymous``, uses :func:`try_normalize` and gets None instead.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = [
    "MAX_RAW_LENGTH",
    "InvalidNumber",
    "NumberPlan",
    "normalize",
    "plan_for_country",
    "try_normalize",
]

#: Longer input is refused before it is looked at character by character.
MAX_RAW_LENGTH = 64

_SEPARATORS = frozenset(" -.()/")
# Trunk prefixes that differ from the usual "0"; only what a default_country_code needs.
_TRUNK_PREFIXES = {"36": "06"}


class InvalidNumber(ValueError):
    """The text is not a phone number this plan can normalise; the message says why."""


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """How numbers written without ``+`` are read.

    ``trunk_prefix`` may be "" (no national prefix, e.g. some closed numbering plans);
    ``bare`` is "international" or "national" (rule 6 of the module docstring).
    """

    country_code: str = "36"
    trunk_prefix: str = "06"
    international_prefix: str = "00"
    min_digits: int = 7
    max_digits: int = 15
    bare: str = "international"

    def __post_init__(self) -> None:
        if not (self.country_code.isascii() and self.country_code.isdigit()):
            raise ValueError(f"country_code must be digits, got {self.country_code!r}")
        if self.country_code.startswith("0") or not 1 <= len(self.country_code) <= 3:
            raise ValueError(
                f"country_code must be 1-3 digits not starting with 0, got {self.country_code!r}"
            )
        for name in ("trunk_prefix", "international_prefix"):
            value = getattr(self, name)
            if not (value == "" or (value.isascii() and value.isdigit())):
                raise ValueError(f"{name} must be digits or empty, got {value!r}")
        if not self.international_prefix:
            raise ValueError("international_prefix must not be empty")
        if not 1 <= self.min_digits <= self.max_digits <= 15:
            raise ValueError("need 1 <= min_digits <= max_digits <= 15 (E.164)")
        if self.bare not in ("international", "national"):
            raise ValueError(f'bare must be "international" or "national", got {self.bare!r}')


def plan_for_country(country_code: str) -> NumberPlan:
    """The default plan of a country: its trunk prefix (``06`` for 36, else ``0``), ``00``."""
    return NumberPlan(
        country_code=country_code, trunk_prefix=_TRUNK_PREFIXES.get(country_code, "0")
    )


def _digits_of(text: str) -> tuple[bool, str]:
    """(had a leading ``+``, the ASCII digits) after rules 2-5; raises InvalidNumber."""
    plus = False
    digits: list[str] = []
    for position, ch in enumerate(text, 1):
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            raise InvalidNumber(f"control character U+{ord(ch):04X} at position {position}")
        if ch in _SEPARATORS or category == "Zs":
            continue
        if ch == "+":
            if plus or digits:
                raise InvalidNumber(f"'+' at position {position}: only allowed at the start")
            plus = True
            continue
        if "0" <= ch <= "9":
            digits.append(ch)
            continue
        if ch.isalpha():
            raise InvalidNumber(f"letter {ch!r} at position {position}: numbers are digits only")
        raise InvalidNumber(f"character {ch!r} at position {position} is not allowed")
    return plus, "".join(digits)


def normalize(raw: str, default_country_code: str = "36", *, plan: NumberPlan | None = None) -> str:
    """``raw`` as ``+`` and E.164 digits; raises :class:`InvalidNumber` (see module rules).

    ``plan`` wins over ``default_country_code``, which picks :func:`plan_for_country`.
    """
    if plan is None:
        plan = plan_for_country(default_country_code)
    if not isinstance(raw, str):
        raise InvalidNumber(f"expected text, got {type(raw).__name__}")
    if len(raw) > MAX_RAW_LENGTH:
        raise InvalidNumber(f"too long: {len(raw)} characters (at most {MAX_RAW_LENGTH})")
    text = raw.strip()
    if not text:
        raise InvalidNumber("empty")
    plus, digits = _digits_of(text)
    if plus and "(0)" in text:
        plus, digits = _digits_of(text.replace("(0)", "", 1))
    if not digits:
        raise InvalidNumber("no digits")
    if plus:
        international = digits
    elif digits.startswith(plan.international_prefix):
        international = digits[len(plan.international_prefix) :]
    elif plan.trunk_prefix and digits.startswith(plan.trunk_prefix):
        international = plan.country_code + digits[len(plan.trunk_prefix) :]
    elif plan.bare == "national":
        international = plan.country_code + digits
    else:
        international = digits
    if international.startswith("0"):
        raise InvalidNumber(f"country code cannot start with 0: {international[:4]}...")
    if len(international) < plan.min_digits:
        raise InvalidNumber(
            f"too short: {len(international)} digits with country code (at least {plan.min_digits})"
        )
    if len(international) > plan.max_digits:
        raise InvalidNumber(
            f"too long: {len(international)} digits with country code (at most {plan.max_digits})"
        )
    return "+" + international


def try_normalize(
    raw: object, default_country_code: str = "36", *, plan: NumberPlan | None = None
) -> str | None:
    """:func:`normalize`, or None when ``raw`` is not a usable number (``anonymous``...)."""
    if not isinstance(raw, str):
        return None
    try:
        return normalize(raw, default_country_code, plan=plan)
    except InvalidNumber:
        return None
