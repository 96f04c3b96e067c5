"""The pipeline check scripts turn a service that cannot be reached into `FAIL at stage <name>`
and exit status 1, never a traceback."""

from __future__ import annotations

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from scripts.pipeline_checks import StageFailed, failed_stage_of, run_script


def _unreachable_clickhouse() -> None:
    # Nothing listens on port 1 of loopback: a real connection error from the real client.
    clickhouse_connect.get_client(dsn="http://127.0.0.1:1", connect_timeout=2).query("SELECT 1")


def test_a_clickhouse_connection_error_names_the_clickhouse_stage() -> None:
    with pytest.raises(OperationalError) as raised:
        _unreachable_clickhouse()
    failed = failed_stage_of(raised.value)
    assert failed.stage == "clickhouse"
    assert "127.0.0.1:1" in failed.message


@pytest.mark.django_db
def test_run_script_reports_the_stage_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_script(_unreachable_clickhouse) == 1
    # (urllib3 may log its retry first.)
    assert "FAIL at stage clickhouse: " in capsys.readouterr().err

    def stage_failure() -> None:
        raise StageFailed("sink", "consumer group lags 12 messages")

    assert run_script(stage_failure) == 1
    assert capsys.readouterr().err.strip() == "FAIL at stage sink: consumer group lags 12 messages"
    assert run_script(lambda: None) == 0
