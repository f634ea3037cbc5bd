"""The running exporter: its configuration, its prober and what reloads did."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from medulla_imaging_exporter.collector import ReloadState
from medulla_imaging_exporter.config import Config, ConfigError
from medulla_imaging_exporter.discovery import merge_entities
from medulla_imaging_exporter.history import DEFAULT_LIMIT, History
from medulla_imaging_exporter.model import DatabaseSnapshot
from medulla_imaging_exporter.prober import Prober

if TYPE_CHECKING:
    from medulla_imaging_exporter.database import DatabaseRefresher

log = logging.getLogger(__name__)


class Runtime:
    """Holds the current configuration; a failed reload keeps it and says so.

    ``loaded`` is the configuration file; ``config`` is what is probed: the same, plus the
    entities discovered in the imaging database when ``discovery: database`` is on.
    """

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
        self.database: DatabaseRefresher | None = None
        self.loaded = self.config = load()  # a bad file at start-up is fatal: raise to the CLI
        self._loaded()

    def _loaded(self) -> None:
        db = self.loaded.database
        if db is None and self.database is not None:
            self.database.close()
            self.database = None
        elif db is not None and self.database is None:
            # Imported only with a ``database:`` block: PyMySQL costs 1 MB to every exporter.
            from medulla_imaging_exporter.database import DatabaseRefresher

            self.database = DatabaseRefresher(db, self._refreshed)
        elif db is not None and self.database is not None:
            self.database.configure(db)  # a reload refreshes at once
        self._apply()
        self.reload_state.successful = True
        self.reload_state.last_success_timestamp = time.time()

    def _refreshed(self, snapshot: DatabaseSnapshot) -> None:
        if self.loaded.discovery is not None:
            self._apply()

    def _apply(self) -> None:
        """Probe the configured entities, with the last good discovered list if discovery is on."""
        entities = self.loaded.entities
        snapshot = self.database_snapshot
        if self.loaded.discovery is not None and snapshot and snapshot.entities is not None:
            entities = merge_entities(self.loaded, snapshot.entities)
        self.config = replace(self.loaded, entities=entities)
        self.prober.configure(entities)

    @property
    def database_snapshot(self) -> DatabaseSnapshot | None:
        """The last refresh from the imaging database; None when no database is configured."""
        return self.database.snapshot if self.database is not None else None

    def reload(self) -> None:
        """Load the configuration again; on error keep the running one and re-raise."""
        try:
            config = self._load()
        except ConfigError as err:
            self.reload_state.successful = False
            log.error("reload failed, keeping the running configuration", extra={"err": str(err)})
            raise
        self.loaded = config
        self._loaded()
        log.info("configuration reloaded", extra={"entities": len(self.config.entities)})

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
        if self.database is not None:
            await self.database.aclose()
        await self.prober.aclose()
