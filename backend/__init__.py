# Celery's Django integration: importing the project package loads the Celery app, so that
# @shared_task decorators bind to it (https://docs.celeryq.dev/en/stable/django/).
from backend.celery import app as celery_app

__all__ = ("celery_app",)
