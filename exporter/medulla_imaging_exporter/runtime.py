"""The running exporter: its configuration, its prober and what reloads did."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from medulla_imaging_exporter.collector import ReloadState
from medulla_imaging_exporter.config import Config, ConfigError
from medulla_imaging_exporter.history import DEFAULT_LIMIT, History
from medulla_imaging_exporter.prober import Prober

log = logging.getLogger(__name__)


class Runtime:
    """Holds the current configuration; a failed reload keeps it and says so."""

    def __init__(
        self,
        load: Callable[[], Config],
        timeout_offset: float = 0.5,
        history_limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._load = load
        self.timeout_offset = timeout_offset
        self.reload_state = ReloadState()
        self.prober = Prober(History(history_limit))
        self.config = load()  # a bad file at start-up is fatal: raise to the CLI
        self._loaded()

    def _loaded(self) -> None:
        self.prober.configure(self.config.entities)
        self.reload_state.successful = True
        self.reload_state.last_success_timestamp = time.time()

    def reload(self) -> None:
        """Load the configuration again; on error keep the running one and re-raise."""
        try:
            config = self._load()
        except ConfigError as err:
            self.reload_state.successful = False
            log.error("reload failed, keeping the running configuration", extra={"err": str(err)})
            raise
        self.config = config
        self._loaded()
        log.info("configuration reloaded", extra={"entities": len(config.entities)})

    def timeout_cap(self, scrape_timeout_header: str | None) -> float | None:
        """Prometheus' scrape timeout minus a small offset, as blackbox_exporter does."""
        if not scrape_timeout_header:
            return None
        try:
            seconds = float(scrape_timeout_header)
        except ValueError:
            return None
        if not seconds > 0:
            return None
        return seconds - self.timeout_offset if seconds > self.timeout_offset else seconds

    async def aclose(self) -> None:
        await self.prober.aclose()
