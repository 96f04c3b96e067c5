"""Runs a command under py-spy and writes the functions that took the most samples.

    python -m bench.profiling OUT.txt -- COMMAND...

OUT.txt gets a table of the top functions by own time and by total time (samples that had the
function anywhere on the stack); OUT.txt.raw keeps py-spy's collapsed stacks for a flame graph."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path


def summarize(raw: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "total time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bench.profiling OUT.txt -- COMMAND...", file=sys.stderr)
        return 2
    out = Path(argv[0])
    raw = out.with_suffix(out.suffix + ".raw")
    py_spy = Path(sys.executable).with_name("py-spy")
    code = subprocess.call(
        [str(py_spy), "record", "--format", "raw", "--rate", "50", "--output", str(raw), "--", *argv[2:]]
    )
    if raw.exists():
        out.write_text(summarize(raw))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
