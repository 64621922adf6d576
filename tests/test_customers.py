"""Customer store against a real redis-server: CSV import, lookups, contact history."""

from __future__ import annotations

import io

import pytest
import structlog

from ccd.core.customer import (
    MAX_FIELD_VALUE_LEN,
    MAX_NAME_LEN,
    Customer,
    CustomerImportError,
    InvalidCustomer,
    implied_tags,
    parse_vip,
)
from ccd.core.numbers import InvalidNumber
from ccd.store.customer import CONTACT_SCHEMA_VERSION, CustomerStore
from ccd.store.redis_store import Codec


@pytest.fixture
def customers(store):
    return CustomerStore(store, history_max=5)


def write(tmp_path, text: str, encoding: str = "utf-8", name: str = "c.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


GOOD_AND_BAD = (
    "number,name,language,vip,segment,notes\n"  # line 1
    "06 1 234 5678,Kovács Anna,hu,yes,gold,\n"  # 2
    "+36 30 123 4567,Doe John,en-GB,no,,likes email\n"  # 3
    "not a number,Bad Row,hu,no,,\n"  # 4
    "06 20 111 2222,Vip Maybe,hu,perhaps,,\n"  # 5
    "\n"  # 6: blank, ignored
    "06 20 333 4444,Too Few,hu\n"  # 7
    "0036 1 234 5678,Dup Anna,hu,no,,\n"  # 8: same number as line 2
    "06 20 555 6666,Lang Bad,xx_yy_zz_long_stuff!,no,,\n"  # 9
    '06 20 777 8888,"Multi\nLine",hu,no,,\n'  # 10-11: a newline in the name
    "06 20 999 0000,Last One,,1,,\n"  # 12
)


def test_import_reports_bad_rows_with_line_numbers_and_keeps_the_good(customers, tmp_path):
    report = customers.import_csv(write(tmp_path, GOOD_AND_BAD))

    assert report.imported == 3
    assert report.refused == 6
    lines = {e.line: e.message for e in report.errors}
    assert sorted(lines) == [4, 5, 7, 8, 9, 10]
    assert "number 'not a number'" in lines[4] and "letter" in lines[4]
    assert "vip" in lines[5]
    assert "3 values, the header has 6 columns" in lines[7]
    assert "already imported from line 2" in lines[8]
    assert "language" in lines[9]
    assert "control character" in lines[10]
    assert report.summary() == "imported 3 customers, refused 6 rows"
    assert not report.ok

    anna = customers.get("+3612345678")
    assert anna == Customer("+3612345678", "Kovács Anna", "hu", True, {"segment": "gold"})
    john = customers.get("06 30 123 4567")
    assert john is not None and john.language == "en-gb" and john.vip is False
    assert john.fields == {"notes": "likes email"}
    last = customers.get("36209990000")
    assert last is not None and last.vip is True and last.language == ""
    assert customers.get("06 20 111 2222") is None  # refused row was not stored


@pytest.mark.parametrize(
    "raw", ["06 1 234 5678", "+36 1 234 5678", "0036-1-234-5678", "3612345678", "06-1/234-5678"]
)
def test_lookup_by_any_formatting_of_the_number(customers, raw):
    customers.put(Customer("+36 1 234 5678", "Anna"))
    found = customers.get(raw)
    assert found is not None and found.name == "Anna" and found.number == "+3612345678"


def test_lookup_of_a_non_number_is_none(customers):
    assert customers.get("anonymous") is None
    assert customers.get("") is None


def test_semicolons_bom_and_case_insensitive_header(customers, tmp_path):
    text = "\ufeffNumber;Name;VIP;Language;City\n06 1 234 5678;Anna;TRUE;HU;Győr\n"
    report = customers.import_csv(write(tmp_path, text))
    assert report.ok and report.imported == 1
    assert customers.get("+3612345678") == Customer(
        "+3612345678", "Anna", "hu", True, {"City": "Győr"}
    )


def test_import_from_open_text_and_binary_files(customers):
    text = "number,name\n06 1 234 5678,Anna\n"
    assert customers.import_csv(io.StringIO("\ufeff" + text)).imported == 1
    assert customers.import_csv(io.BytesIO(b"\xef\xbb\xbf" + text.encode())).imported == 1


def test_bytes_that_are_not_utf8_refuse_only_their_row(customers, tmp_path):
    data = b"number,name\n06 1 234 5678,Anna\n06 1 234 5679," + b"J\xf3zsef\n"
    path = tmp_path / "latin.csv"
    path.write_bytes(data + b"06 1 234 5670,Bela\n")
    report = customers.import_csv(path)
    assert report.imported == 2
    assert [(e.line, "UTF-8" in e.message) for e in report.errors] == [(3, True)]


def test_oversized_values_are_refused(customers, tmp_path):
    long_name = "x" * (MAX_NAME_LEN + 1)
    long_note = "y" * (MAX_FIELD_VALUE_LEN + 1)
    huge = "z" * 200_000  # beyond the csv module's own field limit
    text = (
        "number,name,notes\n"
        f"06 1 234 5671,{long_name},\n"
        f"06 1 234 5672,Ok,{long_note}\n"
        f'06 1 234 5673,"{huge}",\n'
        "06 1 234 5674,Fine,short\n"
    )
    report = customers.import_csv(write(tmp_path, text))
    assert report.imported == 1
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert "name is 129 characters long" in report.errors[0].message
    assert "'notes' is 1025 characters long" in report.errors[1].message
    assert customers.get("06 1 234 5674") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name,vip\nAnna,yes\n", "no 'number' column"),
        ("number,name,Name\n", "appears twice"),
        ("number,,name\n", "column 2 has no name"),
    ],
)
def test_unusable_files_are_refused_as_a_whole(customers, tmp_path, text, message):
    with pytest.raises(CustomerImportError, match=message):
        customers.import_csv(write(tmp_path, text))


def test_missing_file_is_a_clear_error(customers, tmp_path):
    with pytest.raises(CustomerImportError, match="cannot read"):
        customers.import_csv(tmp_path / "nope.csv")


def test_trailing_delimiters_are_tolerated(customers, tmp_path):
    report = customers.import_csv(write(tmp_path, "number,name,\n06 1 234 5678,Anna,,\n"))
    assert report.ok and customers.get("06 1 234 5678").name == "Anna"


def test_import_logs_a_summary(customers, tmp_path):
    with structlog.testing.capture_logs() as logs:
        customers.import_csv(write(tmp_path, GOOD_AND_BAD))
    summary = [e for e in logs if e["event"] == "customer.imported"]
    assert summary and summary[0]["imported"] == 3 and summary[0]["refused"] == 6


def test_import_writes_in_batches_beyond_one_batch(customers):
    rows = "".join(f"+3620{n:07d},Customer {n}\n" for n in range(1234))
    report = customers.import_csv(io.StringIO("number,name\n" + rows))
    assert report.imported == 1234 and report.ok
    assert customers.get("+36200001233").name == "Customer 1233"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("YES", True),
        ("true", True),
        ("1", True),
        (" True ", True),
        ("no", False),
        ("false", False),
        ("0", False),
        ("", False),
        ("No", False),
    ],
)
def test_vip_parsing(text, expected):
    assert parse_vip(text) is expected


@pytest.mark.parametrize("text", ["y", "2", "vip", "maybe", None])
def test_vip_parsing_refuses_other_words(text):
    with pytest.raises(InvalidCustomer, match="vip"):
        parse_vip(text)


# --- put -----------------------------------------------------------------------------------


def test_put_normalises_and_validates(customers):
    stored = customers.put(Customer("06 1 234 5678", "  Anna   Kovács ", "HU", True, {"a": "b"}))
    assert stored == Customer("+3612345678", "Anna Kovács", "hu", True, {"a": "b"})
    assert customers.get("+3612345678") == stored
    with pytest.raises(InvalidNumber):
        customers.put(Customer("call me", "X"))
    with pytest.raises(InvalidCustomer, match="control character"):
        customers.put(Customer("06 1 234 5678", "Evil\nName"))
    with pytest.raises(InvalidCustomer, match="vip"):
        customers.put(Customer("06 1 234 5678", "X", vip="yes"))  # type: ignore[arg-type]


def test_a_record_of_another_schema_is_absent_not_a_crash(customers, store):
    key = store.keys.customer("+3612345678")
    store.client.set(key, Codec(99).encode({"number": "+3612345678", "name": "Future"}))
    assert customers.get("06 1 234 5678") is None
    store.client.set(key, Codec(1).encode({"number": "+3612345678", "name": 5}))
    assert customers.get("06 1 234 5678") is None


def test_delete(customers):
    customers.put(Customer("06 1 234 5678", "Anna"))
    assert customers.delete("+36 1 234 5678") is True
    assert customers.get("06 1 234 5678") is None
    assert customers.delete("+36 1 234 5678") is False


# --- contact history ---------------------------------------------------------------------------


def test_history_is_newest_first_and_capped(customers, store):
    for n in range(8):
        customers.add_contact("06 1 234 5678", {"at": 1000.0 + n, "outcome": f"o{n}"})
    full = customers.history("+3612345678", limit=100)
    assert [e["outcome"] for e in full] == ["o7", "o6", "o5", "o4", "o3"]  # history_max=5
    assert store.client.llen(store.keys.contacts("+3612345678")) == 5
    assert [e["at"] for e in customers.history("0036 1 234 5678", limit=2)] == [1007.0, 1006.0]


def test_history_exists_without_a_customer_record(customers):
    customers.add_contact("+36 30 123 4567", {"outcome": "voicemail"})
    assert customers.get("+36 30 123 4567") is None
    assert customers.history("06 30 123 4567") == [{"outcome": "voicemail"}]


def test_history_of_unknown_or_unusable_numbers_is_empty(customers):
    assert customers.history("06 1 234 5678") == []
    assert customers.history("anonymous") == []
    assert customers.history("06 1 234 5678", limit=0) == []


def test_bad_contact_entries_are_refused(customers):
    with pytest.raises(InvalidCustomer, match="bytes encoded"):
        customers.add_contact("06 1 234 5678", {"notes": "x" * 5000})
    with pytest.raises(InvalidCustomer, match="cannot be stored"):
        customers.add_contact("06 1 234 5678", {"when": object()})
    with pytest.raises(InvalidNumber):
        customers.add_contact("anonymous", {"outcome": "answered"})
    assert customers.history("06 1 234 5678") == []


def test_a_foreign_history_entry_is_skipped(customers, store):
    key = store.keys.contacts("+3612345678")
    store.client.lpush(key, Codec(CONTACT_SCHEMA_VERSION).encode({"outcome": "old"}))
    store.client.lpush(key, b"\xc1garbage")
    with structlog.testing.capture_logs() as logs:
        assert customers.history("06 1 234 5678") == [{"outcome": "old"}]
    assert any(e["event"] == "customer.bad_contact" for e in logs)


# --- implied tags ------------------------------------------------------------------------------


def test_implied_tags_come_from_the_language_only():
    assert implied_tags(Customer("+3612345678", language="hu", vip=True)) == {"lang_hu"}
    assert implied_tags(Customer("+3612345678", language="en-gb")) == {"lang_en"}
    assert implied_tags(Customer("+3612345678", vip=True)) == frozenset()
    assert implied_tags(None) == frozenset()


def test_an_open_binary_file_is_left_open_for_its_owner(customers):
    source = io.BytesIO(b"number,name\n06 1 234 5678,Anna\n")
    assert customers.import_csv(source).imported == 1
    assert not source.closed
