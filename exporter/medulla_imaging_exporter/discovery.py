"""The entity list of ``discovery: database``: discovered entities merged with static ones.

Pure functions, so that the rules (which entry wins, what a bad URL does) are tested
without a database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from medulla_imaging_exporter.config import Config, Entity, _url
from medulla_imaging_exporter.model import DiscoveredEntity

log = logging.getLogger(__name__)


def _checked_url(found: DiscoveredEntity) -> str | None:
    """The server URL, or None (not_linked) with a warning if it is not an http(s) URL."""
    if found.url is None:
        return None
    try:
        return _url(found.url)
    except ValueError as err:
        log.warning(
            "ignoring the imaging server URL of a discovered entity",
            extra={"entity": found.name, "uuid": found.uuid, "err": str(err)},
        )
        return None


def merge_entities(config: Config, discovered: Sequence[DiscoveredEntity]) -> tuple[Entity, ...]:
    """Discovered entities with the ``defaults``, then the static entries that matched none.

    A static entry with the uuid (if it gives one) or else the name of a discovered entity
    overrides it: its name, settings and URL win, discovery fills in what it leaves out.
    Names must be unique labels: a later duplicate gets its uuid appended.
    """
    by_uuid = {e.uuid: e for e in config.entities if e.uuid is not None}
    by_name = {e.name: e for e in config.entities if e.uuid is None}
    used: set[str] = set()
    merged: list[Entity] = []
    for found in discovered:
        url = _checked_url(found)
        static = by_uuid.get(found.uuid) or by_name.get(found.name)
        if static is None:
            name = found.name or found.uuid
            merged.append(replace(config.defaults, name=name, uuid=found.uuid, url=url))
            continue
        used.add(static.name)
        merged.append(replace(static, uuid=static.uuid or found.uuid, url=static.url or url))
    merged.extend(e for e in config.entities if e.name not in used)
    return _unique_names(merged)


def _unique_names(entities: Sequence[Entity]) -> tuple[Entity, ...]:
    seen: set[str] = set()
    out: list[Entity] = []
    for entity in entities:
        if entity.name in seen:
            renamed = f"{entity.name} ({entity.uuid})"
            log.warning("duplicate entity name", extra={"entity": entity.name, "renamed": renamed})
            entity = replace(entity, name=renamed)
        seen.add(entity.name)
        out.append(entity)
    return tuple(out)
