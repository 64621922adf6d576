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

CSV import (``ccd customer import FILE``)
-----------------------------------------
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
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import redis
import structlog

from ccd.core.customer import (
    Customer,
    CustomerImportError,
    ImportReport,
    InvalidCustomer,
    check_text,
    csv_header,
    csv_rows,
    parse_vip,
    validated,
)
from ccd.core.numbers import InvalidNumber, NumberPlan, normalize, try_normalize
from ccd.store.batch import Batch
from ccd.store.redis_store import (
    Codec,
    SchemaMismatch,
    Store,
    unavailable_as_domain_error,
)

__all__ = [
    "CONTACT_SCHEMA_VERSION",
    "CUSTOMER_SCHEMA_VERSION",
    "HISTORY_MAX",
    "CustomerStore",
]

log = structlog.get_logger()

CUSTOMER_SCHEMA_VERSION = 1
CONTACT_SCHEMA_VERSION = 1
#: Contact history entries kept per number.
HISTORY_MAX = 50
#: An encoded contact entry larger than this is refused.
MAX_CONTACT_BYTES = 4096
_IMPORT_BATCH = 500
#: Tries of the optimistic history edit before it gives up (logged).
_HISTORY_TRIES = 5


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


class CustomerStore:
    """Customers and contact history over a :class:`~ccd.store.redis_store.Store`."""

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
            log.warning("customer.bad_record", key=key)
        return customer

    def normalize(self, number: str) -> str | None:
        """The number in the one form customers are keyed by, or None."""
        return try_normalize(number, plan=self.plan)

    def lookup_op(
        self,
        batch: Batch,
        normalised: str,
        then: Callable[[Customer | None, list[dict[str, Any]]], None],
        limit: int = 10,
    ) -> None:
        """The customer and (for a known one) the history, read in ``batch``: a call's
        screen-pop costs no round trip of its own."""
        key, contacts = self.keys.customer(normalised), self.keys.contacts(normalised)
        found: list[Customer | None] = []

        def customer(raw: bytes | None) -> None:
            record = self._records._decode(key, raw)
            found.append(None if record is None else _customer_from_record(record))

        def history(raws: list[bytes]) -> None:
            known = found[0] if found else None
            then(known, self._entries(contacts, raws) if known is not None else [])

        batch.command("GET", key, then=customer)
        batch.command("LRANGE", contacts, 0, min(limit, self.history_max) - 1, then=history)

    def put(self, customer: Customer) -> Customer:
        """Store (replace) the customer; returns it as stored (number normalised)."""
        checked = validated(customer, self.plan)
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
        data = self.contact_bytes(entry)
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
        return self._entries(key, raws)

    def _entries(self, key: str, raws: list[bytes]) -> list[dict[str, Any]]:
        entries = []
        for raw in raws:
            try:
                entries.append(self._contact_codec.decode(raw, key))
            except SchemaMismatch as exc:
                log.warning("customer.bad_contact", key=key, found=repr(exc.found))
        return entries

    def contact_bytes(self, entry: Mapping[str, Any]) -> bytes:
        """A contact entry as stored; InvalidCustomer if it cannot be (too big, bad keys)."""
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
        return data

    def add_codes(self, number: str, call_uuid: str, names: Sequence[str]) -> bool:
        """Add disposition codes ``names`` to the call's entry in the (normalised) number's
        history, if it is still there (the list is capped). Optimistic: WATCH, rewrite the
        one entry, retry; False when the entry is gone or the list stayed too busy."""
        key = self.keys.contacts(number)
        client = self._client
        with unavailable_as_domain_error("disposition history"):
            for _ in range(_HISTORY_TRIES):
                with client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        raws = pipe.lrange(key, 0, -1)
                        for index, raw in enumerate(raws):
                            try:
                                entry = self._contact_codec.decode(raw, key)
                            except SchemaMismatch:  # another schema: not ours to edit
                                continue
                            if entry.get("call") != call_uuid:
                                continue
                            codes = list(entry.get("codes") or [])
                            entry["codes"] = list(dict.fromkeys([*codes, *names]))
                            pipe.multi()
                            pipe.lset(key, index, self._contact_codec.encode(entry))
                            pipe.execute()
                            return True
                        return False
                    except redis.exceptions.WatchError:
                        continue
        log.warning("disposition.history_busy", call=call_uuid)
        return False

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
        columns = csv_header(next(reader))
        report = ImportReport()
        seen: dict[str, int] = {}
        batch: list[tuple[str, bytes]] = []
        for start, cells in csv_rows(reader, report):
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
            "customer.imported",
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
        vip = parse_vip(check_text("vip", values.pop("vip", ""), 10))
        name = values.pop("name", "").strip()
        language = values.pop("language", "")
        fields = {k: v.strip() for k, v in values.items() if v.strip()}
        return validated(Customer(number, name, language, vip, fields), self.plan)

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
