"""Customers and their contact history in Redis, keyed by the normalised number (R-IVR).

Theory of operation
-------------------
* A :class:`Customer` is stored at ``Keys.customer(<+number>)`` as a msgpack record of schema
  ``CUSTOMER_SCHEMA_VERSION``: ``{"_v", "number", "name", "language", "vip", "fields"}``. Every
  lookup normalises the number first (:mod:`ccd.core.numbers`), so any way of writing it finds it.
* Contact history is a Redis list at ``Keys.contacts(<+number>)``, one msgpack entry per
  contact (schema ``CONTACT_SCHEMA_VERSION``), newest first: ``LPUSH`` then ``LTRIM`` in one
  MULTI, so the list never holds more than ``history_max`` entries. History exists for any
  caller, customer record or not. Suggested entry keys: ``at`` (epoch seconds, from the
  caller's clock), ``call``, ``queue``, ``agent``, ``outcome`` (``answered``, ``no_answer``,
  ``voicemail``, ``abandoned``...; the screen-pop ``{last}`` shows it).
* Reads are forgiving, writes are strict: ``get``/``history`` of a number that cannot be
  normalised answer None / [] (it cannot be anyone's number; on the call path the caller may be
  ``anonymous``), while ``put``/``add_contact`` refuse it with :class:`InvalidNumber` or
  :class:`InvalidCustomer`. A stored record of another schema or shape is logged and treated
  as absent.

CSV import (``ccd customers import FILE``)
------------------------------------------
UTF-8 (a BOM is ignored), delimiter ``,``, ``;`` or tab, guessed from the header line. The
header names the columns, case-insensitively: ``number`` (required), ``name``, ``language``,
``vip``; every other named column becomes a free field (empty values are left out). A row
replaces the whole stored record of its number. A bad row is skipped and reported with its line
number and reason; blank lines are ignored; the rest of the file is still imported. Refused:
a number that does not normalise, a value over its size limit, control characters (free fields
may hold line breaks and tabs), a ``vip`` other than yes/no/true/false/1/0 (or empty = no), a
language that is not a code like ``hu`` or ``en-GB``, a row with more or fewer values than the
header, bytes that are not UTF-8, and a number already imported from an earlier line of the
same file (the first one wins). Only a problem with the file itself (unreadable, no header, no
``number`` column, duplicate or unnamed columns) raises :class:`CustomerImportError`; Redis
failing mid-way raises RedisUnavailable (rows already written stay written).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import structlog

from ccd.adapters.redis_store import (
    Codec,
    SchemaMismatch,
    Store,
    unavailable_as_domain_error,
)
from ccd.core.numbers import InvalidNumber, NumberPlan, normalize, try_normalize

__all__ = [
    "CONTACT_SCHEMA_VERSION",
    "CUSTOMER_SCHEMA_VERSION",
    "HISTORY_MAX",
    "Customer",
    "CustomerImportError",
    "CustomerStore",
    "ImportReport",
    "InvalidCustomer",
    "RowError",
    "implied_tags",
    "parse_vip",
]

log = structlog.get_logger()

CUSTOMER_SCHEMA_VERSION = 1
CONTACT_SCHEMA_VERSION = 1
#: Contact history entries kept per number.
HISTORY_MAX = 50
MAX_NAME_LEN = 128
MAX_FIELD_NAME_LEN = 64
MAX_FIELD_VALUE_LEN = 1024
MAX_FIELDS = 50
#: An encoded contact entry larger than this is refused.
MAX_CONTACT_BYTES = 4096
#: Row errors kept in an ImportReport (all are counted).
MAX_REPORTED_ERRORS = 1000
_IMPORT_BATCH = 500

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


def _check_text(what: str, value: object, limit: int, *, multiline: bool = False) -> str:
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
    text = _check_text("language", value, 35).strip().lower().replace("_", "-")
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
    return frozenset({f"lang_{primary}"})


def _validated(customer: Customer, plan: NumberPlan | None) -> Customer:
    """The customer with number and language normalised; InvalidCustomer/InvalidNumber."""
    if not isinstance(customer, Customer):
        raise TypeError(f"expected a Customer, got {type(customer).__name__}")
    number = normalize(customer.number, plan=plan)
    name = " ".join(_check_text("name", customer.name, MAX_NAME_LEN).split())
    if not isinstance(customer.vip, bool):
        raise InvalidCustomer("vip must be True or False")
    fields = dict(customer.fields)
    if len(fields) > MAX_FIELDS:
        raise InvalidCustomer(f"{len(fields)} free fields (at most {MAX_FIELDS})")
    for key, value in fields.items():
        _check_text("field name", key, MAX_FIELD_NAME_LEN)
        if not key.strip():
            raise InvalidCustomer("a field name is empty")
        _check_text(f"field {key[:20]!r}", value, MAX_FIELD_VALUE_LEN, multiline=True)
    return Customer(number, name, _language(customer.language), customer.vip, fields)


def _customer_from_record(record: Mapping[str, Any]) -> Customer | None:
    fields = record.get("fields")
    if not (
        isinstance(record.get("number"), str)
        and isinstance(record.get("name"), str)
        and isinstance(record.get("language"), str)
        and isinstance(record.get("vip"), bool)
        and isinstance(fields, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    ):
        return None
    return Customer(record["number"], record["name"], record["language"], record["vip"], fields)


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


class CustomerStore:
    """Customers and contact history over a :class:`~ccd.adapters.redis_store.Store`."""

    def __init__(
        self, store: Store, *, history_max: int = HISTORY_MAX, plan: NumberPlan | None = None
    ) -> None:
        if isinstance(history_max, bool) or not isinstance(history_max, int) or history_max < 1:
            raise ValueError(f"history_max must be a whole number >= 1, got {history_max!r}")
        # Same Redis and key prefix, but customer records carry their own schema version.
        self._records = Store(store.client, store.keys.prefix, Codec(CUSTOMER_SCHEMA_VERSION))
        self._contact_codec = Codec(CONTACT_SCHEMA_VERSION)
        self._client = store.client
        self.keys = store.keys
        self.history_max = history_max
        self.plan = plan

    # --- customers ----------------------------------------------------------------------------

    def get(self, number: str) -> Customer | None:
        """The customer with this number written any way, or None (also for a non-number)."""
        normalised = try_normalize(number, plan=self.plan)
        if normalised is None:
            return None
        key = self.keys.customer(normalised)
        record = self._records.get(key)
        if record is None:
            return None
        customer = _customer_from_record(record)
        if customer is None:
            log.warning("customers.bad_record", key=key)
        return customer

    def put(self, customer: Customer) -> Customer:
        """Store (replace) the customer; returns it as stored (number normalised)."""
        checked = _validated(customer, self.plan)
        self._records.put(self.keys.customer(checked.number), checked.to_dict())
        return checked

    def delete(self, number: str) -> bool:
        """Forget the customer (not the contact history); True if there was one."""
        normalised = normalize(number, plan=self.plan)
        return self._records.delete(self.keys.customer(normalised))

    # --- contact history ------------------------------------------------------------------------

    def add_contact(self, number: str, entry: Mapping[str, Any]) -> None:
        """Record a contact, newest first, keeping at most ``history_max`` entries."""
        normalised = normalize(number, plan=self.plan)
        if not isinstance(entry, Mapping) or not all(isinstance(k, str) for k in entry):
            raise InvalidCustomer("a contact entry must be a mapping with text keys")
        try:
            data = self._contact_codec.encode(entry)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidCustomer(f"contact entry cannot be stored: {exc}") from None
        if len(data) > MAX_CONTACT_BYTES:
            raise InvalidCustomer(
                f"contact entry is {len(data)} bytes encoded (at most {MAX_CONTACT_BYTES})"
            )
        key = self.keys.contacts(normalised)
        with unavailable_as_domain_error("add_contact"):
            pipe = self._client.pipeline(transaction=True)
            pipe.lpush(key, data)
            pipe.ltrim(key, 0, self.history_max - 1)
            pipe.execute()

    def history(self, number: str, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` contacts, newest first ([] for a non-number)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
        normalised = try_normalize(number, plan=self.plan)
        if normalised is None or limit == 0:
            return []
        key = self.keys.contacts(normalised)
        with unavailable_as_domain_error("history"):
            raws = self._client.lrange(key, 0, min(limit, self.history_max) - 1)
        entries = []
        for raw in raws:
            try:
                entries.append(self._contact_codec.decode(raw, key))
            except SchemaMismatch as exc:
                log.warning("customers.bad_contact", key=key, found=repr(exc.found))
        return entries

    # --- CSV import -----------------------------------------------------------------------------

    def import_csv(self, source: str | os.PathLike[str] | IO[str] | IO[bytes]) -> ImportReport:
        """Import customers from a CSV file (a path or an open file); see the module docstring."""
        if isinstance(source, str | os.PathLike):
            try:
                raw = open(source, "rb")  # noqa: SIM115 - closed by the with below
            except OSError as exc:
                raise CustomerImportError(
                    f"cannot read {os.fspath(source)!r}: {exc.strerror or exc}"
                ) from None
            with raw:
                return self._import_file(raw)
        return self._import_file(source)

    def _import_file(self, source: IO[str] | IO[bytes]) -> ImportReport:
        if not isinstance(source.read(0), bytes):
            return self._import(source)  # type: ignore[arg-type]
        # Bytes are read as UTF-8 (BOM skipped); a byte that is not UTF-8 is kept as a
        # surrogate, so the row holding it is refused, not the whole file.
        text = io.TextIOWrapper(
            source,  # type: ignore[arg-type]
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="",
        )
        try:
            return self._import(text)
        finally:
            text.detach()  # the caller's file is the caller's to close

    def _import(self, stream: IO[str]) -> ImportReport:
        header_line = stream.readline()
        if header_line.startswith("\ufeff"):  # a BOM in a stream opened as text
            header_line = header_line[1:]
        if not header_line.strip():
            raise CustomerImportError("the file is empty or its first line is blank")
        delimiter = max(",;\t", key=header_line.count)
        reader = csv.reader(itertools.chain([header_line], stream), delimiter=delimiter)
        columns = _header(next(reader))
        report = ImportReport()
        seen: dict[str, int] = {}
        batch: list[tuple[str, bytes]] = []
        for start, cells in _rows(reader, report):
            if not any(cell.strip() for cell in cells):
                continue
            try:
                customer = self._row_customer(columns, cells)
            except (InvalidCustomer, InvalidNumber) as exc:
                report.refuse(start, str(exc))
                continue
            first = seen.setdefault(customer.number, start)
            if first != start:
                report.refuse(start, f"number {customer.number} already imported from line {first}")
                continue
            batch.append(
                (
                    self.keys.customer(customer.number),
                    self._records.codec.encode(customer.to_dict()),
                )
            )
            if len(batch) >= _IMPORT_BATCH:
                report.imported += self._write(batch)
        report.imported += self._write(batch)
        log.info(
            "customers.imported",
            imported=report.imported,
            refused=report.refused,
            lines=reader.line_num,
        )
        return report

    def _row_customer(self, columns: list[str], cells: list[str]) -> Customer:
        if len(cells) > len(columns) and not any(c.strip() for c in cells[len(columns) :]):
            cells = cells[: len(columns)]  # trailing delimiters, as spreadsheets write them
        if len(cells) != len(columns):
            raise InvalidCustomer(f"{len(cells)} values, the header has {len(columns)} columns")
        values = dict(zip(columns, cells, strict=True))
        number_text = values.pop("number").strip()
        try:
            number = normalize(number_text, plan=self.plan)
        except InvalidNumber as exc:
            raise InvalidNumber(f"number {number_text[:40]!r}: {exc}") from None
        vip = parse_vip(_check_text("vip", values.pop("vip", ""), 10))
        name = values.pop("name", "").strip()
        language = values.pop("language", "")
        fields = {k: v.strip() for k, v in values.items() if v.strip()}
        return _validated(Customer(number, name, language, vip, fields), self.plan)

    def _write(self, batch: list[tuple[str, bytes]]) -> int:
        if not batch:
            return 0
        with unavailable_as_domain_error("import_csv"):
            pipe = self._client.pipeline(transaction=False)
            for key, data in batch:
                pipe.set(key, data)
            pipe.execute()
        written = len(batch)
        batch.clear()
        return written


def _header(cells: list[str]) -> list[str]:
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


def _rows(reader: Iterator[list[str]], report: ImportReport) -> Iterable[tuple[int, list[str]]]:
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
