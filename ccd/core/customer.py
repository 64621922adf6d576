"""Customers (R-IVR): the record, its rules, and the CSV rows of an import. No I/O.

:class:`ccd.store.customer.CustomerStore` keeps them in Redis; its module doc describes the
record, the contact history and the CSV format this module checks.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccd.core.numbers import NumberPlan, normalize

__all__ = [
    "MAX_FIELDS",
    "MAX_FIELD_NAME_LEN",
    "MAX_FIELD_VALUE_LEN",
    "MAX_NAME_LEN",
    "Customer",
    "CustomerImportError",
    "ImportReport",
    "InvalidCustomer",
    "RowError",
    "check_text",
    "csv_header",
    "csv_rows",
    "implied_tags",
    "parse_vip",
    "validated",
]

MAX_NAME_LEN = 128
MAX_FIELD_NAME_LEN = 64
MAX_FIELD_VALUE_LEN = 1024
MAX_FIELDS = 50
#: Row errors kept in an ImportReport (all are counted).
MAX_REPORTED_ERRORS = 1000

#: The agent tag a customer's language implies: ``lang_`` and the primary language.
LANGUAGE_TAG_PREFIX = "lang_"
#: Priority points a VIP customer's call gains in its queue.
VIP_PRIORITY_BOOST = 10

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
_VIP_WORDS = {
    "yes": True,
    "true": True,
    "1": True,
    "no": False,
    "false": False,
    "0": False,
    "": False,
}
_CONTROL = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
_STANDARD_COLUMNS = ("number", "name", "language", "vip")


class InvalidCustomer(ValueError):
    """A customer record or contact entry breaks a rule; the message says which."""


class CustomerImportError(Exception):
    """The import file itself cannot be used (no rows were imported)."""


def parse_vip(value: object) -> bool:
    """yes/no/true/false/1/0 in any case (empty is no); InvalidCustomer otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _VIP_WORDS:
        return _VIP_WORDS[value.strip().lower()]
    raise InvalidCustomer(f"vip must be yes/no/true/false/1/0, got {str(value)[:20]!r}")


def check_text(what: str, value: object, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidCustomer(f"{what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidCustomer(f"{what} is {len(value)} characters long (at most {limit})")
    allowed = "\n\r\t" if multiline else ""
    for ch in value:
        if "\udc80" <= ch <= "\udcff":  # surrogateescape: a byte that was not UTF-8
            raise InvalidCustomer(f"{what} is not valid UTF-8")
        if unicodedata.category(ch) in _CONTROL and ch not in allowed:
            raise InvalidCustomer(f"{what} contains control character U+{ord(ch):04X}")
    return value


def _language(value: object) -> str:
    text = check_text("language", value, 35).strip().lower().replace("_", "-")
    if text and not _LANGUAGE_RE.match(text):
        raise InvalidCustomer(f"language must be a code like hu or en-GB, got {text[:20]!r}")
    return text


@dataclass(frozen=True, slots=True)
class Customer:
    """One customer. ``number`` is normalised (+E.164) by :meth:`CustomerStore.put`."""

    number: str
    name: str = ""
    language: str = ""
    vip: bool = False
    fields: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able view."""
        return {
            "number": self.number,
            "name": self.name,
            "language": self.language,
            "vip": self.vip,
            "fields": dict(self.fields),
        }


def implied_tags(customer: Customer | None) -> frozenset[str]:
    """Agent tags a call from this customer requires, added to the queue's tags.

    Only the language: ``language="hu"`` implies ``lang_hu``; a regional code implies its
    primary language (``en-gb`` → ``lang_en``), because agents are tagged by language, not
    region. VIP is deliberately not a tag: it raises the call's priority in the queue and
    must never shrink the set of agents who may take it.
    """
    if customer is None or not customer.language:
        return frozenset()
    primary = customer.language.split("-", 1)[0]
    return frozenset({LANGUAGE_TAG_PREFIX + primary})


def validated(customer: Customer, plan: NumberPlan | None) -> Customer:
    """The customer with number and language normalised; InvalidCustomer/InvalidNumber."""
    if not isinstance(customer, Customer):
        raise TypeError(f"expected a Customer, got {type(customer).__name__}")
    number = normalize(customer.number, plan=plan)
    name = " ".join(check_text("name", customer.name, MAX_NAME_LEN).split())
    if not isinstance(customer.vip, bool):
        raise InvalidCustomer("vip must be True or False")
    fields = dict(customer.fields)
    if len(fields) > MAX_FIELDS:
        raise InvalidCustomer(f"{len(fields)} free fields (at most {MAX_FIELDS})")
    for key, value in fields.items():
        check_text("field name", key, MAX_FIELD_NAME_LEN)
        if not key.strip():
            raise InvalidCustomer("a field name is empty")
        check_text(f"field {key[:20]!r}", value, MAX_FIELD_VALUE_LEN, multiline=True)
    return Customer(number, name, _language(customer.language), customer.vip, fields)


@dataclass(frozen=True, slots=True)
class RowError:
    """One refused row: its first line in the file and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: ``errors`` keeps the first MAX_REPORTED_ERRORS, ``refused`` counts."""

    imported: int = 0
    refused: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.refused == 0

    def refuse(self, line: int, message: str) -> None:
        self.refused += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line, message))

    def summary(self) -> str:
        """One line for the operator, e.g. ``imported 120 customers, refused 2 rows``."""
        text = f"imported {self.imported} customers, refused {self.refused} rows"
        if self.refused > len(self.errors):
            text += f" (first {len(self.errors)} listed)"
        return text


def csv_header(cells: list[str]) -> list[str]:
    while cells and not cells[-1].strip():
        cells = cells[:-1]  # trailing delimiters
    columns = []
    for position, cell in enumerate(cells, 1):
        name = cell.strip()
        if not name:
            raise CustomerImportError(f"header column {position} has no name")
        if any("\udc80" <= ch <= "\udcff" for ch in name):
            raise CustomerImportError("the header is not valid UTF-8")
        if len(name) > MAX_FIELD_NAME_LEN:
            raise CustomerImportError(f"header column {position} name is too long")
        lowered = name.lower()
        name = lowered if lowered in _STANDARD_COLUMNS else name
        if name.lower() in (c.lower() for c in columns):
            raise CustomerImportError(f"column {name!r} appears twice in the header")
        columns.append(name)
    if "number" not in columns:
        raise CustomerImportError(
            "the header has no 'number' column (expected number,name,language,vip,...)"
        )
    if len(columns) - len(set(columns) & set(_STANDARD_COLUMNS)) > MAX_FIELDS:
        raise CustomerImportError(f"more than {MAX_FIELDS} free columns")
    return columns


def csv_rows(reader: Iterator[list[str]], report: ImportReport) -> Iterable[tuple[int, list[str]]]:
    """(first line, cells) of each row; a row the csv module cannot parse is refused."""
    while True:
        start = reader.line_num + 1  # type: ignore[attr-defined]
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.refuse(start, f"cannot parse the row: {exc}")
            continue
        yield start, cells
