"""How the exporter uses Python's cyclic garbage collector.

A scrape of a thousand entities holds some two hundred thousand objects until its
exposition is written; then reference counting frees them all, since a probe leaves no
reference cycle behind (``transport`` breaks the one httpx makes; a test checks it).
The cyclic collector, which runs whenever live young objects pile up, would walk them
some twenty times per scrape and find nothing: a sixth of the exporter's CPU. So it
waits while a scrape runs, and what is alive at start-up is moved out of its sight.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# The first generation's threshold (Python's default is 700 allocations).
THRESHOLD = 10_000


def tune() -> None:
    """Move the objects alive at start-up (modules, configuration) out of the collector's
    sight and make its runs rarer."""
    gc.freeze()
    gc.set_threshold(THRESHOLD, 10, 10)


class _Pause:
    """Scrapes may overlap: the collector comes back when the last one ends."""

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
            if self.scrapes == 0 and self.was_enabled:
                gc.enable()


paused_during_scrape = _Pause()
