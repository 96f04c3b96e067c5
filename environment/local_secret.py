"""The local stack's Django secret key: a random key kept in `$VAR_DIR/django-secret-key` (mode
0600), so a fresh checkout runs without configuration while a deployment must bring its own.

Only the local stack's own entry points create it — `make migrate` (`python -m
environment.local_secret`), the pipeline supervisor and the benchmark's isolation — never the
Django settings: they only read it, so a server started without `DJANGO_SECRET_KEY` where nobody
ran the local stack is refused instead of quietly inventing a key. Django-free, like the rest of
this package.

    python -m environment.local_secret     # create the key if missing; print where it is
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from environment import SettingsError, var_dir

FILE_NAME = "django-secret-key"


def secret_key_file(directory: Path | None = None) -> Path:
    return (directory or var_dir()) / FILE_NAME


def read_local_secret_key(path: Path) -> str | None:
    """The key kept in `path`, or None when there is no such file. A file that others may read,
    or an empty one, is refused rather than used."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"{path} may be read by other users (mode {stat.S_IMODE(mode):o}): chmod 600 it, "
            "or delete it to have a new key created"
        )
    key = path.read_text().strip()
    if not key:
        raise SettingsError(f"{path} is empty: delete it to have a new key created")
    return key


def ensure_local_secret_key(path: Path) -> str:
    """The key kept in `path`, created with a new random key when missing.

    Written under a temporary name (mkstemp: mode 0600) and linked into place, so two processes
    starting at once agree on one key and neither reads a half-written file."""
    existing = read_local_secret_key(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50) + "\n")
        os.link(staged, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        os.unlink(staged)
    key = read_local_secret_key(path)
    assert key is not None
    return key


def main() -> int:
    path = secret_key_file()
    try:
        ensure_local_secret_key(path)
    except (OSError, SettingsError) as exc:
        print(f"local Django secret key: {exc}", file=sys.stderr)
        return 1
    print(f"local Django secret key: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
