"""Give the heap's free pages back to the operating system (`qa.memory` re-exports it).

A batch of answers allocates a few hundred MB of short-lived buffers (the reader's windows, the
generator's key/value cache); glibc's malloc keeps the freed pages in its arenas, so the process's RSS
stays at its high-water mark long after the batch. ``malloc_trim(0)`` returns them. The model worker
calls it when its queue runs empty, so an idle server sits at its working set, not its peak
(measured in ``make loadtest``: idle server RSS 1482–1524 MiB -> 1200–1217 MiB); loading an index and
building its retriever call it too (~0.8 kB a passage of parsed rows stayed resident otherwise).

Example::

    >>> trim_heap()  # False where the C library has no malloc_trim (musl, macOS)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function, or None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Return freed heap pages to the OS (about 5 ms after a batch); False where unsupported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
