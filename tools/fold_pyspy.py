"""Summarise a py-spy raw profile (``py-spy record --threads --idle -f raw``) per thread.

    python tools/fold_pyspy.py PROFILE.txt [--depth 4] [--top 12]

For each thread (most samples first): its samples, and the innermost ``--depth`` frames
of its commonest stacks with their share. ``--idle`` samples are included, so a thread
waiting on a queue or a lock shows where it waits; at py-spy's rate (``-r``) samples
convert to seconds.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_FRAME = re.compile(r" \((?:.*/)?([\w.<>-]+\.py):(\d+)\)")


def fold(lines, depth: int = 4) -> dict[str, collections.Counter]:
    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in lines:
        line = line.rstrip("\n")
        if not line or " " not in line:
            continue
        stack, count = line.rsplit(" ", 1)
        if not count.isdigit():
            continue
        frames = stack.split(";")
        thread = re.sub(r"^thread \((\d+)\):? ?", r"t\1 ", frames[0]).strip()
        calls = [_FRAME.sub(r" \1:\2", f) for f in frames[1:]] or ["?"]
        per_thread[thread][" < ".join(reversed(calls[-depth:]))] += int(count)
    return per_thread


def report(per_thread: dict[str, collections.Counter], top: int = 12) -> str:
    out = []
    for thread, stacks in sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(stacks.values())
        out.append(f"== {thread}  samples={total}")
        out += [f"   {n:6d} {100 * n / total:5.1f}%  {stack[:240]}" for stack, n in stacks.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    with open(args.profile) as fh:
        sys.stdout.write(report(fold(fh, args.depth), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
