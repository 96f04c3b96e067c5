"""`make chaos`'s own logic, without its services: the arguments it refuses, and the order check it
runs on both topics (the run itself is `python -m scripts.chaos`, a few minutes)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from scripts.chaos.run import parse_args
from scripts.chaos.topics import check_orders, event_version


@pytest.mark.parametrize("orders", ["0", "2", "lots", "1001"])
def test_a_burst_size_out_of_range_is_refused_with_a_message(
    orders: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--orders", orders])
    assert exit_info.value.code == 2
    assert "--orders" in capsys.readouterr().err


def _events(*pairs: tuple[str, int], event_ids: list[str] | None = None) -> list[Any]:
    ids = event_ids or [f"{key}-{version}" for key, version in pairs]
    return [
        SimpleNamespace(
            key=key.encode(), value=json.dumps({"event_id": event_id, "aggregate_version": version}).encode()
        )
        for (key, version), event_id in zip(pairs, ids, strict=True)
    ]


def test_the_order_check_counts_an_older_version_after_a_newer_one_and_a_stale_last_record() -> None:
    # Order 1 in order with a duplicate; order 2 gets v1 again after v3, as a relay that lost its
    # lease would send it; order 3's latest version never arrived; poison on another key is left out.
    records = _events(
        ("1", 1), ("1", 1), ("1", 2), ("2", 1), ("2", 2), ("2", 3), ("2", 1), ("3", 1),
        event_ids=["a", "a", "b", "c", "d", "e", "c", "f"],
    )  # fmt: skip
    records.append(SimpleNamespace(key=b"poison", value=b"{not json"))

    check = check_orders(records, {"1": 2, "2": 3, "3": 2}, event_version, strict=True)

    assert (check.orders, check.records, check.duplicates) == (3, 8, 2)
    # Order 2's late v1: once as an older version after v3, once as its last record.
    assert check.out_of_order == 2
    assert check.missing_latest == 1
    # Not strict (a consumer re-reading a batch): only first occurrences count, and the last record.
    assert check_orders(records, {"1": 2, "2": 3, "3": 2}, event_version, strict=False).out_of_order == 1
