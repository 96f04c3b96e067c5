"""bench.medians: the median of each figure over several runs, runs that miss a figure left out."""

from __future__ import annotations

import json
from pathlib import Path

from bench import medians


def _report(relay: float, sink: float | None, view_p95: float) -> dict:
    report: dict = {
        "command": f"python -m bench # relay {relay}",
        "relay": {"one_worker": {"events_per_s": relay}},
        "views": {"1000": {"views": {"daily_sales_mv": {"p95_ms": view_p95}}}},
        "fsync": {
            "batch_sizes": {"1000": {"fsync_ms_per_insert": relay / 100, "no_fsync_ms_per_insert": 1.5}}
        },
    }
    if sink is not None:
        report["consumers"] = {"sink": {"rows_per_s": sink}}
    return report


def test_median_per_figure_with_each_runs_value() -> None:
    rows = {
        row["what"]: row
        for row in medians.medians([_report(3000, 100, 5), _report(1000, None, 9), _report(2000, 300, 1)])
    }
    assert rows["relay events/s, 1 worker"]["median"] == 2000
    assert rows["relay events/s, 1 worker"]["runs"] == [3000, 1000, 2000]
    # The run without a sink figure does not count as zero.
    assert rows["sink rows/s"]["median"] == 200
    assert rows["sink rows/s"]["runs"] == [100, None, 300]
    assert rows["daily_sales_mv p95 ms at 1,000 orders"]["median"] == 5
    assert rows["sink insert ms, 1,000 rows, fsync"]["runs"] == [30, 10, 20]
    assert rows["sink insert ms, 1,000 rows, no fsync"]["median"] == 1.5
    assert "HTTP API orders/s" not in rows


def test_write_and_cli(tmp_path: Path) -> None:
    dirs = []
    for i, relay in enumerate((10.0, 30.0, 20.0)):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        (run_dir / "report.json").write_text(json.dumps(_report(relay, 1.0, 1.0)))
        dirs.append(run_dir)
    assert medians.main([str(d) for d in dirs]) == 0
    table = (tmp_path / "medians.md").read_text()
    assert "| relay events/s, 1 worker | 20.0 | 10.0 | 30.0 | 20.0 |" in table
    assert json.loads((tmp_path / "medians.json").read_text())["figures"]
    assert medians.main([str(tmp_path / "missing")]) == 2
