"""Celery tasks of the analytics app: a thin interface over the freshness watermark's check."""

from __future__ import annotations

from celery import shared_task

from analytics.freshness import pipeline_watermark_record
from consumers.watermark import WatermarkUnknown


@shared_task(ignore_result=True)
def record_pipeline_watermark() -> str | None:
    try:
        check = pipeline_watermark_record()
    except WatermarkUnknown:
        # The next tick tries again; meanwhile the watermark stays where it was (never too new).
        return None
    return check.watermark.isoformat()
