"""`make env`: the compose stack's `.env`, written from `.env.example` with a new random value for
every placeholder, so no stack starts with a password someone else knows.

    python -m scripts.compose_env [--output .env]

Refuses to overwrite an existing file: the databases' volumes keep the passwords they were first
started with, and a new .env would lock the stack out of them. The file is created readable by
its owner only. Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import secrets
import string
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
EXAMPLE_FILE = REPO_DIR / ".env.example"
PLACEHOLDER = "change-me"
# Letters and digits only: no quoting in URLs (DATABASE_URL, CLICKHOUSE_URL, the Redis URL),
# shells or SQL, and never a leading "-" that a command line would take for an option. 43 of them
# carry 256 bits; Django's deployment check wants at least 50 characters for its key.
ALPHABET = string.ascii_letters + string.digits
LENGTHS = {"DJANGO_SECRET_KEY": 64}
PASSWORD_LENGTH = 43


def read_env_file(text: str) -> dict[str, str]:
    """KEY=value lines as Docker Compose reads them (comments and blank lines skipped)."""
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"line {number} is not KEY=value: {line!r}")
        values[key.strip()] = value.strip()
    return values


def generate(example: str) -> str:
    """The example with each placeholder value replaced by a fresh random one; the rest as is."""
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and value.strip() == PLACEHOLDER:
            length = LENGTHS.get(key.strip(), PASSWORD_LENGTH)
            line = f"{key}={''.join(secrets.choice(ALPHABET) for _ in range(length))}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_new(path: Path, text: str) -> None:
    """Creates `path` with mode 0600; never replaces an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO_DIR / ".env")
    args = parser.parse_args(argv)
    output: Path = args.output
    if output.exists():
        print(
            f"make env: {output} exists, left as it is. The stack's volumes keep the passwords they "
            "were created with: to start over with new ones, run make clean and delete the file first.",
            file=sys.stderr,
        )
        return 1
    text = generate(EXAMPLE_FILE.read_text())
    write_new(output, text)
    print(f"make env: wrote {output} with new random credentials (readable by you only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
