"""The pipeline's `watermark` role: checks the freshness watermark every
PIPELINE_WATERMARK_INTERVAL seconds until SIGTERM or Ctrl-C (analytics/freshness.py says why this
is a process of its own and how each check is bounded)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from analytics.freshness import WatermarkChecker, run_checks

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Check the freshness watermark every PIPELINE_WATERMARK_INTERVAL seconds until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        checker = WatermarkChecker.from_settings()
        interval = settings.PIPELINE_WATERMARK_INTERVAL
        logger.info(
            "checking the freshness watermark every %gs, each check bounded to %gs", interval, checker.timeout
        )
        try:
            run_checks(checker, interval, stop)
        finally:
            checker.close()
        logger.info("freshness watermark checks stopped")
