"""The chDB gateway's credential: one random password, created on first use and kept in
`$VAR_DIR/chdb-gateway.password` (mode 0600), for ClickHouse's user `default`.

The gateway checks it on every request; the supervisor, the SQL shell, the pipeline checks and the
benchmarks read the same file and put it into `CLICKHOUSE_URL`
(`http://default:<password>@127.0.0.1:8123`), which clickhouse-connect turns into ClickHouse's own
HTTP authentication. Whoever can read the file can use the gateway: the file is readable by its
owner only, and a file that others may read is refused rather than used.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

import environment

GATEWAY_USER = "default"
PASSWORD_FILE_NAME = "chdb-gateway.password"


class CredentialError(Exception):
    """The credential file cannot be created or is not fit to use, in words for the operator."""


def password_file(var_dir: Path | None = None) -> Path:
    return (var_dir or environment.var_dir()) / PASSWORD_FILE_NAME


def gateway_password(path: Path) -> str:
    """The password kept in `path`, which is created with a new random password when missing.

    The new file is written under a temporary name and linked into place, so two processes
    starting at once agree on one password and neither ever reads a half-written file."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        os.link(staged, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        os.unlink(staged)
    return _read(path)


def _read(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"{path} may be read by other users (mode {stat.S_IMODE(mode):o}): chmod 600 it, "
            "or delete it to have a new password created"
        )
    password = path.read_text().strip()
    if not password:
        raise CredentialError(f"{path} is empty: delete it to have a new password created")
    return password


def local_gateway_url(port: int, var_dir: Path | None = None) -> str:
    """The URL a local role or tool uses to reach the gateway on 127.0.0.1:`port`."""
    password = gateway_password(password_file(var_dir))
    return f"http://{GATEWAY_USER}:{password}@127.0.0.1:{port}"
