"""The acceptance run: `make run`'s supervisor brings every role up, test-pipeline passes with
N = 1000 and the deletion flow passes; with one stage missing both scripts fail and name it, and the
supervisor itself reports a role that dies."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def _report(result: object) -> str:
    return f"exit {getattr(result, 'returncode', '?')}\nstdout:\n{getattr(result, 'stdout', '')[-4000:]}\n" \
        f"stderr:\n{getattr(result, 'stderr', '')[-4000:]}"  # fmt: skip


def test_whole_pipeline_passes_check_pipeline_with_1000_orders_and_the_deletion_flow(
    pipeline: Pipeline,
) -> None:
    pipeline.start()
    started = time.monotonic()
    result = pipeline.script(
        sys.executable, "-m", "scripts.check_pipeline", "--orders", "1000", "--timeout", "180", timeout=420
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, _report(result)
    out = result.stdout
    assert "API: created 1000 orders" in out
    assert "ClickHouse rows      1000 of 1000 orders at their MySQL version" in out
    assert "outbox               published" in out and "pending 0, failed 0" in out
    assert "latency commit→ClickHouse over 1000 orders: p50" in out
    assert "PASS: 1000 orders reached ClickHouse and every view" in out
    print(f"test-pipeline N=1000 took {elapsed:.1f}s\n{out}")

    deletion = pipeline.script("bash", "scripts/test-deletion-flow.sh", "--orders", "3", timeout=300)
    assert deletion.returncode == 0, _report(deletion)
    assert "MySQL: 3 orders have deleted_at" in deletion.stdout
    assert "PASS: deleted orders" in deletion.stdout

    # Ctrl-C/SIGTERM: every role stops, gateway last, and the supervisor exits 0.
    assert pipeline.stop() == 0, pipeline.console()[-4000:]
    console = pipeline.console()
    assert (
        console.index("stopped web") < console.index("stopped sink") < console.index("stopped chdb-gateway")
    )


def test_without_the_sink_both_scripts_fail_naming_the_stage_and_a_dying_role_stops_the_pipeline(
    pipeline: Pipeline,
) -> None:
    pipeline.start("--without", "sink")
    assert "pipeline is ready: chdb-gateway, transformer, worker, watermark, beat, web" in pipeline.console()

    result = pipeline.script(
        sys.executable, "-m", "scripts.check_pipeline", "--orders", "20", "--timeout", "20", timeout=120
    )
    assert result.returncode == 1, _report(result)
    assert "FAIL at stage sink: consumer group" in result.stderr, _report(result)
    assert "published" in result.stdout  # the progress line showed how far it got

    deletion = pipeline.script("bash", "scripts/test-deletion-flow.sh", "--timeout", "10", timeout=120)
    assert deletion.returncode == 1, _report(deletion)
    assert "FAIL at stage pipeline: the new orders never reached ClickHouse" in deletion.stderr, _report(
        deletion
    )

    # A role that dies takes the pipeline down with a message naming it, and a non-zero exit.
    os.kill(pipeline.role_pid("transformer"), signal.SIGKILL)
    assert pipeline.wait_exit(timeout=90) == 1
    console = pipeline.console()
    assert "FAILED: role transformer exited with code -9" in console, console[-3000:]
    assert "stopped chdb-gateway" in console
