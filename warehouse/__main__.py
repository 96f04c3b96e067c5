"""ClickHouse operations in one entry point:

    python -m warehouse chdb-gateway --data-dir var/chdb [--port 8123]   # serve chDB over HTTP
    python -m warehouse shell [-q "SQL"]                                  # SQL shell (make clickhouse-shell)

Each command takes its own options (`python -m warehouse COMMAND --help`). The schema is applied by
`python -m consumers migrate` or `manage.py clickhouse_migrate`, which hold the configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys

from warehouse import chdb_gateway, shell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description="ClickHouse operations.")
    parser.add_argument("command", choices=["chdb-gateway", "shell"])
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the command's own options")
    args = parser.parse_args(argv)
    if args.command == "chdb-gateway":
        # The gateway is a long-running role: its log goes to the console (README).
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return chdb_gateway.main(args.options)
    return shell.main(args.options)


if __name__ == "__main__":
    sys.exit(main())
