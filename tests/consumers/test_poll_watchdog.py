"""A poll that never returns ends the consumer process with a restartable exit code and every
thread's stack, instead of leaving a silent zombie while lag grows."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from consumers.runner import POLL_STALLED_EXIT_CODE, PollWatchdog


def test_a_poll_longer_than_the_limit_is_reported_once() -> None:
    stalls: list[float] = []
    reported = threading.Event()

    def on_stall(elapsed: float) -> None:
        stalls.append(elapsed)
        reported.set()

    watchdog = PollWatchdog(0.4, on_stall=on_stall)
    watchdog.poll_started()
    assert reported.wait(5)
    time.sleep(0.5)
    assert len(stalls) == 1 and stalls[0] > 0.4
    watchdog.stop()


def test_polls_that_return_and_time_between_polls_do_not_count() -> None:
    stalls: list[float] = []
    watchdog = PollWatchdog(0.4, on_stall=stalls.append)
    for _ in range(8):  # 8 short polls, 1.6 s in all
        watchdog.poll_started()
        time.sleep(0.2)
        watchdog.poll_finished()
    time.sleep(0.8)  # a long write between polls is not a hung poll
    watchdog.stop()
    assert stalls == []


def test_the_default_action_exits_with_the_restart_code_and_dumps_stacks() -> None:
    script = (
        "import time\n"
        "from consumers.runner import PollWatchdog\n"
        "PollWatchdog(0.3).poll_started()\n"
        "time.sleep(30)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == POLL_STALLED_EXIT_CODE
    assert "has not returned" in result.stderr
    assert "Thread 0x" in result.stderr  # faulthandler's dump of every thread
