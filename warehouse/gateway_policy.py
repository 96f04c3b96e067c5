"""What the chDB gateway lets a statement do, decided on the engine's own parse of it.

The engine parses every statement before it runs: `formatQuerySingleLine` proves the text is one
statement (chDB runs `a; b` as two) and gives its canonical form, and `EXPLAIN AST` of that form
gives the syntax tree. The policy then reads the tree, not the text the client sent:

- over GET only what a ClickHouse server runs in readonly mode over GET: SELECT, SHOW, DESCRIBE,
  EXISTS and EXPLAIN;
- everywhere, nothing that reaches outside the database unless the gateway was started with
  external access: table functions, table and database engines that read or write files, URLs or
  other servers (`file`, `url`, `s3`, `remote`, `mysql`, `python`, …; every one the engine knows
  except the local ones in SAFE_TABLE_SOURCES), the `file()` function, dictionary sources,
  INTO OUTFILE, FROM INFILE, ATTACH … FROM a path, BACKUP and RESTORE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Table functions and engines (of tables and databases) that stay inside the database.
SAFE_TABLE_SOURCES = frozenset(
    name.lower()
    for name in (
        # table functions
        "numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series",
        "primes", "values", "null", "view", "viewIfPermitted", "viewExplain", "merge",
        "generateRandom", "format", "loop", "dictionary", "mergeTreeIndex", "mergeTreeProjection",
        # table engines
        "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree",
        "CollapsingMergeTree", "VersionedCollapsingMergeTree", "GraphiteMergeTree",
        "CoalescingMergeTree", "Memory", "Null", "Log", "TinyLog", "StripeLog", "Buffer", "Set",
        "Join", "Merge", "Dictionary", "View", "MaterializedView", "GenerateRandom", "Loop",
        # database engines
        "Atomic", "Ordinary", "Lazy",
    )
)  # fmt: skip
# The scalar function that reads a file (the table functions come from the engine's own list).
_EXTERNAL_FUNCTIONS = frozenset({"file"})
# Statement kinds a ClickHouse server runs for a GET request (readonly = 1).
_READ_ONLY_KINDS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "Show",
                    "Describe", "Exists", "Explain")  # fmt: skip
_SELECT_KINDS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery"})
_FILE_TRANSFER_KINDS = frozenset({"BackupQuery", "RestoreQuery"})
# Clauses of the canonical text, read with every string literal emptied and every quoted
# identifier replaced, so that neither can look like a clause.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_FILE_CLAUSES = re.compile(r"\bINTO\s+OUTFILE\b|\bFROM\s+INFILE\b|\bFROM\s+''", re.IGNORECASE)
ENABLE_HINT = "start the gateway with CHDB_GATEWAY_EXTERNAL_ACCESS=1 to allow it"


class PolicyError(Exception):
    """A statement the gateway refuses to run; `code` is ClickHouse's error code for it."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def sql_string(text: str) -> str:
    """`text` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class AstNode:
    depth: int
    kind: str
    name: str  # a function's name; "" for other nodes


@dataclass(frozen=True)
class Statement:
    """One statement as the engine parsed it."""

    canonical: str
    nodes: tuple[AstNode, ...]

    @classmethod
    def from_explain(cls, canonical: str, explain_lines: Iterable[str]) -> Statement:
        nodes = []
        for line in explain_lines:
            words = line.split()
            if not words:
                continue
            is_function = words[0] in {"Function", "FunctionWithKeyValueArguments"}
            name = words[1] if is_function and len(words) > 1 else ""
            nodes.append(AstNode(len(line) - len(line.lstrip(" ")), words[0], name))
        if not nodes:
            raise ValueError(f"the engine returned no syntax tree for {canonical!r}")
        return cls(canonical, tuple(nodes))

    @property
    def kind(self) -> str:
        return self.nodes[0].kind

    @property
    def carries_data(self) -> bool:
        """An INSERT whose rows follow the statement (VALUES or FORMAT), not a SELECT."""
        return self.kind == "InsertQuery" and not any(
            node.depth == 1 and node.kind in _SELECT_KINDS for node in self.nodes
        )

    def functions(self) -> list[AstNode]:
        return [node for node in self.nodes if node.name]


class SqlPolicy:
    """Decides on a parsed statement; `engine_sources` are the names of every table function and
    table or database engine the engine knows (system.table_functions, …_engines)."""

    def __init__(self, engine_sources: Iterable[str], *, external_access: bool) -> None:
        self.external_access = external_access
        known = {name.lower() for name in engine_sources}
        self.external_names = frozenset((known - SAFE_TABLE_SOURCES) | _EXTERNAL_FUNCTIONS)

    def check(self, statement: Statement, *, read_only: bool) -> None:
        if read_only and not statement.kind.startswith(_READ_ONLY_KINDS):
            raise PolicyError(
                403,
                164,
                f"Cannot execute query in readonly mode: {statement.kind} over GET. A GET request "
                "may only SELECT, SHOW, DESCRIBE, EXISTS or EXPLAIN; send writes with POST (READONLY)",
            )
        if not self.external_access:
            self._check_stays_inside(statement)

    def _check_stays_inside(self, statement: Statement) -> None:
        for node in statement.functions():
            if node.kind == "FunctionWithKeyValueArguments":
                refused = f"dictionary source {node.name}"
            elif node.name.lower() in self.external_names:
                refused = f"{node.name}()"
            else:
                continue
            raise _outside(f"{refused} reads or writes outside the database (files, URLs or other servers)")
        if statement.kind in _FILE_TRANSFER_KINDS:
            raise _outside("BACKUP and RESTORE write or read files outside the database")
        clauses = _QUOTED.sub(_blank, statement.canonical)
        clause = _FILE_CLAUSES.search(clauses)
        if clause:
            named = " ".join(clause.group().split())
            raise _outside(f"{named} reads or writes a file of the gateway's machine")


def _blank(quoted: re.Match[str]) -> str:
    return "''" if quoted.group().startswith("'") else "quoted"


def _outside(reason: str) -> PolicyError:
    return PolicyError(403, 497, f"{reason}; {ENABLE_HINT} (ACCESS_DENIED)")
