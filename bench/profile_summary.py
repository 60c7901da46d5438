"""Summarize py-spy raw (folded) profiles written by ``python -m bench --profile DIR``.

    .venv/bin/python -m bench.profile_summary DIR/*.txt [--top 25] [--filter sd/]

For each file: the functions with the most samples on top of the stack (self) and anywhere in
the stack (total), as a share of all samples (idle time in the event loop's select included,
so the shares show where the process's wall time went, not only CPU).
"""

import argparse
import collections
import re
import sys
from pathlib import Path

ROOT = f"{Path(__file__).resolve().parent.parent}/"  # this checkout: paths shown relative to it
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def short(frame: str, keep_line: bool) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", ROOT):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['func']} ({path}{':' + m['line'] if keep_line and m['line'] else ''})"


def summarize(path: str, top: int, only: str | None, lines: bool) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    n = 0
    for raw in open(path, encoding="utf-8", errors="replace"):
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, count = raw.rpartition(" ")
        try:
            c = int(count)
        except ValueError:
            continue
        frames = [short(f, lines) for f in stack.split(";")]
        # drop the thread/process header frames py-spy adds
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n += c
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    print(f"== {path}: {n} samples")
    for title, counter in (("self", own), ("total", total)):
        print(f"  -- top {title}")
        shown = 0
        for f, c in counter.most_common():
            if only and only not in f:
                continue
            print(f"  {c / max(n, 1) * 100:5.1f}%  {f}")
            shown += 1
            if shown >= top:
                break


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--filter", help="only frames whose text contains this (e.g. 'sd/')")
    p.add_argument("--lines", action="store_true", help="keep line numbers (per-line hot spots)")
    a = p.parse_args()
    for f in a.files:
        summarize(f, a.top, a.filter, a.lines)
    sys.exit(0)
