"""``gameball-batch``'s CSV input tested alone: column kinds from the wire schema,
cells typed by them, and rows read into records (or refused, naming the column)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support import WHEN

from gameball_async import Operation
from gameball_async._seam import Kind
from gameball_async.cli._csvfile import convert, header_columns, read_csv
from gameball_async.cli._parse import InputError, Reject


class TestCsvTyping:
    def test_columns_take_their_kind_from_the_wire_schema(self) -> None:
        header = [
            "customerId",
            "amount",
            "transactionTime",
            "transactionId",
            "customerAttributes.channel",
            "note",
        ]
        kinds = {c.header: c.kind for c in header_columns(Operation.CASHBACK, header)}
        assert kinds["amount"] is Kind.NUMBER
        assert kinds["customerId"] is not None
        assert kinds["note"] is None  # unknown columns stay text, validation names them
        nested = header_columns(Operation.CASHBACK, header)[4]
        assert nested.path == ("customerAttributes", "channel")

    @pytest.mark.parametrize(
        ("kind", "cell", "value"),
        [
            (Kind.NUMBER, " 12 ", 12),
            (Kind.NUMBER, "12.5", 12.5),
            (Kind.INT, "-3", -3),
            (Kind.BOOL, "Yes", True),
            (Kind.BOOL, "f", False),
            (Kind.STRINGS, "a| b ||c", ["a", "b", "c"]),
            (Kind.STRINGS, '["x"]', ["x"]),
            (Kind.DATETIME, WHEN, WHEN),
            (None, " kept as is ", " kept as is "),
        ],
    )
    def test_cells_convert_to_their_kind(self, kind: Kind | None, cell: str, value: Any) -> None:
        assert convert(kind, cell) == value

    @pytest.mark.parametrize(
        ("kind", "cell", "says"),
        [
            (Kind.NUMBER, "ten", "must be a number"),
            (Kind.NUMBER, "nan", "must be a finite number"),
            (Kind.INT, "1.5", "must be an integer"),
            (Kind.BOOL, "maybe", "must be a boolean"),
        ],
    )
    def test_bad_cells_say_why(self, kind: Kind, cell: str, says: str) -> None:
        with pytest.raises(ValueError, match=says):
            convert(kind, cell)

    def test_a_header_without_a_required_column_names_the_wire_spelling(self) -> None:
        with pytest.raises(InputError, match="use the camelCase wire name 'customerId'"):
            header_columns(
                Operation.CASHBACK, ["customer_id", "amount", "transactionId", "transactionTime"]
            )
        with pytest.raises(InputError, match="repeats column 'amount'"):
            header_columns(Operation.CASHBACK, ["amount", "amount"])


def accept(line: int, record: Any) -> tuple[Any, Reject | None]:
    """A check that takes every record as it is."""
    return record, None


HEADER = "customerId,amount,transactionId,transactionTime"


def read_rows(
    folder: Path, *lines: str, operation: Operation = Operation.CASHBACK
) -> list[tuple[int, Any, Reject | None]]:
    """The rows read from a CSV file of these lines (the header first)."""
    path = folder / "in.csv"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return list(read_csv(path, operation, None, accept))


class TestCsvRows:
    def test_cells_become_typed_and_nested_fields(self, tmp_path: Path) -> None:
        rows = read_rows(
            tmp_path,
            f"{HEADER},customerAttributes.channel",
            f"c1,12.5,t1,{WHEN},mobile",
            f"c2,3,t2,{WHEN},",
        )
        assert rows == [
            (
                2,
                {
                    "customerId": "c1",
                    "amount": 12.5,
                    "transactionId": "t1",
                    "transactionTime": WHEN,
                    "customerAttributes": {"channel": "mobile"},
                },
                None,
            ),
            # an empty cell is an absent field
            (
                3,
                {"customerId": "c2", "amount": 3, "transactionId": "t2", "transactionTime": WHEN},
                None,
            ),
        ]

    def test_a_row_is_named_by_its_first_line_and_blank_rows_are_skipped(
        self, tmp_path: Path
    ) -> None:
        rows = read_rows(tmp_path, HEADER, f'"c\n1",1,t1,{WHEN}', ",,,", f"c2,2,t2,{WHEN}")
        assert [(line, item["customerId"]) for line, item, _ in rows] == [(2, "c\n1"), (5, "c2")]

    def test_bad_rows_are_refused_with_the_column_at_fault(self, tmp_path: Path) -> None:
        rows = read_rows(tmp_path, HEADER, f"c1,ten,t1,{WHEN}", f"c2,2,t2,{WHEN},extra")
        [(_, none_1, bad_cell), (_, none_2, too_long)] = rows
        assert (none_1, none_2) == (None, None)
        assert bad_cell == Reject(
            2,
            "amount",
            "field 'amount' must be a number, got 'ten'",
            {"customerId": "c1", "amount": "ten", "transactionId": "t1", "transactionTime": WHEN},
        )
        assert too_long is not None
        assert too_long.field is None
        assert "5 cells but the header has 4 columns" in too_long.error

    def test_order_transactions_take_the_order_id_column(self, tmp_path: Path) -> None:
        orders = Operation.ORDER_TRANSACTIONS
        rows = read_rows(tmp_path, "note,orderId", "x, o1 ", ",o2", operation=orders)
        assert rows == [(2, "o1", None), (3, "o2", None)]
        # a single column is the id whatever its name
        only = read_rows(tmp_path, "order", "o3", operation=orders)
        assert only == [(2, "o3", None)]

    def test_an_empty_file_has_no_rows_and_bad_text_is_an_input_error(self, tmp_path: Path) -> None:
        assert read_rows(tmp_path) == []
        path = tmp_path / "latin1.csv"
        path.write_bytes(HEADER.encode() + b"\nc\xe9,1,t1,x\n")
        # (the line named is where decoding stood: text is decoded a block at a time)
        with pytest.raises(InputError, match=r"latin1\.csv: line \d+ is not UTF-8 text"):
            list(read_csv(path, Operation.CASHBACK, None, accept))
