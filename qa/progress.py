"""Progress reporting for long work: a tqdm bar on a terminal, a line every ~10% in logs and CI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress_reporter(desc: str, unit: str = "item") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that closes itself when ``done == total``."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, desc=desc, unit=unit, file=sys.stderr)

        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return tick

    start = time.monotonic()
    last = [-1]

    def line(done: int, total: int) -> None:
        step = done * 10 // max(total, 1)
        if step != last[0] or done >= total:
            last[0] = step
            print(f"{desc}: {done}/{total} {unit}s ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)

    return line
