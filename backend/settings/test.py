"""Test settings: only what tests need differs from base.

Each pytest run gets its own MariaDB test database (pytest-django creates and drops it) and its own
chDB directory and ClickHouse database, so two runs on one machine never share tables, and no test
touches var/chdb, which a running local pipeline owns.
"""

import os
import secrets
import tempfile
import uuid
from pathlib import Path

_RUN_ID = os.environ.get("TEST_RUN_ID") or uuid.uuid4().hex[:8]
os.environ["TEST_RUN_ID"] = _RUN_ID  # shared with subprocesses started by tests
# Outside debug the base settings start only with a real key and host names: the run has a key of
# its own and plain HTTP, and so do the processes its tests start (they inherit the environment).
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
os.environ.setdefault("DJANGO_HTTPS", "0")

from backend.settings.base import *  # noqa: E402, F403
from backend.settings.base import DATABASES  # noqa: E402

DATABASES["default"]["TEST"] = {
    "NAME": f"test_{DATABASES['default']['NAME']}_{_RUN_ID}",
    "CHARSET": "utf8mb4",
    "COLLATION": "utf8mb4_unicode_ci",
}
DATABASES["default"]["CONN_MAX_AGE"] = 0

# chDB allows one data directory per process: the run's fixtures (tests/conftest.py) and any code
# under test that connects through settings share this one.
CHDB_TEST_DIR = Path(tempfile.gettempdir()) / f"chdb-test-{_RUN_ID}"
CLICKHOUSE_URL = f"chdb://{CHDB_TEST_DIR}"
CLICKHOUSE_DATABASE = f"analytics_{_RUN_ID}"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests that exercise the relay kick turn it on themselves; elsewhere a committed order must not
# queue relay runs on a shared Redis that no worker of this run consumes.
OUTBOX_KICK_ON_COMMIT = False
