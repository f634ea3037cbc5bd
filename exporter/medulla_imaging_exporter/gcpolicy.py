"""How the exporter manages its memory around scrapes: the cyclic collector, the C heap.

A scrape of a thousand entities holds some two hundred thousand objects until its
exposition is written; then reference counting frees them all, since a probe leaves no
reference cycle behind (``transport`` breaks the one httpx makes; a test checks it).
The cyclic collector, which runs whenever live young objects pile up, would walk them
some twenty times per scrape and find nothing: a sixth of the exporter's CPU. So it
waits while a scrape runs, and what is alive at start-up is moved out of its sight.

The C heap (OpenSSL's buffers, large Python objects) is left full of holes by a scrape of
many servers: freed, but kept by glibc's allocator, about 25 MB at a thousand entities,
and more after each scrape. When the last scrape ends, its free pages go back to the
system (``malloc_trim``), once there are enough of them to be worth the millisecond.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable, Iterator

# The first generation's threshold (Python's default is 700 allocations).
THRESHOLD = 10_000
# Free bytes in the C heap above which a scrape's end trims it.
TRIM_FREE_BYTES = 4 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: ten ``size_t``, of which ``fordblks``, the free bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def _glibc() -> tuple[Callable[[int], int], Callable[[], _MallInfo2]] | None:
    """glibc's ``malloc_trim`` and ``mallinfo2`` (2.33 and later); None on other C libraries."""
    libc = ctypes.CDLL(None)
    try:
        trim, info = libc.malloc_trim, libc.mallinfo2
    except AttributeError:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    info.argtypes, info.restype = [], _MallInfo2
    return trim, info


_GLIBC = _glibc()


def trim_c_heap() -> bool:
    """Give the C heap's free pages back to the system if they are many; True if it did."""
    if _GLIBC is None:
        return False
    trim, info = _GLIBC
    if info().fordblks < TRIM_FREE_BYTES:
        return False
    trim(0)
    return True


def tune() -> None:
    """Move the objects alive at start-up (modules, configuration) out of the collector's
    sight and make its runs rarer."""
    gc.freeze()
    gc.set_threshold(THRESHOLD, 10, 10)


class _Pause:
    """Scrapes may overlap: the collector comes back, and the C heap is trimmed, when the
    last one ends."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.scrapes == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
        self.scrapes += 1
        try:
            yield
        finally:
            self.scrapes -= 1
            if self.scrapes == 0:
                if self.was_enabled:
                    gc.enable()
                trim_c_heap()


paused_during_scrape = _Pause()
