"""What a bulk write (a Bundle of many entries) does to the process: cyclic GC paused, free heap returned after.

A Bundle parses into hundreds of thousands of dicts and lists, none of them in a reference cycle. Left on, the
cyclic garbage collector walks them again and again while they are built (on the Synthea set about a sixth
of the request's time), and frees nothing. Reference counting still frees everything as before; cycles made
meanwhile wait until no bulk write of this process is running. Afterwards the C heap's free pages go back to
the operating system (glibc `malloc_trim`), so a worker's resident memory falls back after a large bundle
instead of staying at its high-water mark.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_running = 0  # bulk writes of this process under way (the gthread workers run several requests at once)
_gc_was_enabled = True


def _load_malloc_trim() -> Callable[[int], Any] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to return
        return None


_malloc_trim = _load_malloc_trim()


@contextmanager
def bulk_write(entries: int) -> Iterator[None]:
    """Around the processing of one Bundle of `entries` entries; small ones are left as they are."""
    global _running, _gc_was_enabled
    if entries < 50:
        yield
        return
    with _lock:
        if _running == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            last = _running == 0
            if last and _gc_was_enabled:
                gc.enable()
        if last and _malloc_trim is not None:
            _malloc_trim(0)
