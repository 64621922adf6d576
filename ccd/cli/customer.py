"""``ccd customer import FILE``: customers from a CSV file (format: ccd.store.customer)."""

from __future__ import annotations

import argparse
import sys

from ccd.cli.common import EXIT_OK, EXIT_USAGE, Refused, cell, leaf, one_line, session
from ccd.core.customer import CustomerImportError
from ccd.store.customer import CustomerStore


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    customer = sub.add_parser("customer", help="the customer store")
    customer_sub = customer.add_subparsers(
        dest="customer_command", required=True, metavar="COMMAND"
    )
    p = leaf(customer_sub, "import", cmd_customer_import, "import customers from a CSV file")
    p.add_argument("file", help="CSV with a header: number,name,language,vip,...")


def cmd_customer_import(args: argparse.Namespace) -> int:
    with session(args) as s:
        try:
            report = CustomerStore(s.store).import_csv(args.file)
        except CustomerImportError as exc:
            raise Refused(f"{args.file}: {one_line(str(exc))}") from None
    print(f"{cell(args.file)}: {report.summary()}")
    for error in report.errors:
        print(f"  {cell(str(error))}")
    if report.refused:
        # The good rows are in; the exit code still tells a script that some were not.
        print(f"{args.op_prog}: {report.refused} row(s) refused", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
