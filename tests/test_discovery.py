"""Merging discovered entities with the static entries of the configuration."""

from __future__ import annotations

import logging

import pytest

from medulla_imaging_exporter.config import Entity, TLSConfig, parse_config
from medulla_imaging_exporter.discovery import merge_entities
from medulla_imaging_exporter.model import DiscoveredEntity

FOUND = [
    DiscoveredEntity("root", "UUID1", None),
    DiscoveredEntity("Public", "UUID2", "https://10.0.0.2:9990/imaging_api"),
    DiscoveredEntity("Private", "UUID3", "https://10.0.0.5:9990/imaging_api"),
    DiscoveredEntity('Élysée "l\'île"', "UUID4", None),
]

CONFIG = parse_config(
    {
        "database": {"host": "db", "user": "u"},
        "discovery": "database",
        "defaults": {"timeout": "7s"},
        "entities": [
            {"name": "Siveo Medulla", "uuid": "UUID1"},
            {
                "name": "Private",
                "timeout": "3s",
                "tls_config": {"insecure_skip_verify": True},
            },
            {"name": "Public", "url": "https://public.example.org:9990/imaging_api"},
            {"name": "Lab", "url": "https://lab.example.org:9990/imaging_api"},
        ],
    }
)


def test_merge_discovered_and_static() -> None:
    by_name = {e.name: e for e in merge_entities(CONFIG, FOUND)}
    assert list(by_name) == ["Siveo Medulla", "Public", "Private", 'Élysée "l\'île"', "Lab"]
    # Matched by uuid: the static name wins, the database had no URL.
    assert by_name["Siveo Medulla"] == Entity(name="Siveo Medulla", uuid="UUID1", timeout=7.0)
    # Matched by name: the static URL wins over the database's, the uuid comes from it.
    assert by_name["Public"].url == "https://public.example.org:9990/imaging_api"
    assert by_name["Public"].uuid == "UUID2"
    # Static settings override the discovered entity's; its URL and uuid stay.
    assert by_name["Private"] == Entity(
        name="Private",
        uuid="UUID3",
        url="https://10.0.0.5:9990/imaging_api",
        timeout=3.0,
        tls=TLSConfig(insecure_skip_verify=True),
    )
    # Discovered only: the defaults.
    assert by_name['Élysée "l\'île"'] == Entity(name='Élysée "l\'île"', uuid="UUID4", timeout=7.0)
    # Static only: added as it is, without a uuid.
    assert by_name["Lab"].uuid is None


def test_duplicate_names_get_their_uuid(caplog: pytest.LogCaptureFixture) -> None:
    found = [DiscoveredEntity("Paris", "UUID5", None), DiscoveredEntity("Paris", "UUID12", None)]
    config = parse_config({"database": {"host": "db", "user": "u"}, "discovery": "database"})
    with caplog.at_level(logging.WARNING):
        names = [e.name for e in merge_entities(config, found)]
    assert names == ["Paris", "Paris (UUID12)"]
    assert "duplicate entity name" in caplog.text


def test_unusable_url_is_not_linked(caplog: pytest.LogCaptureFixture) -> None:
    found = [
        DiscoveredEntity("Broken", "UUID8", "ftp://10.0.0.6/"),
        DiscoveredEntity("", "UUID9", None),
    ]
    config = parse_config({"database": {"host": "db", "user": "u"}, "discovery": "database"})
    with caplog.at_level(logging.WARNING):
        entities = merge_entities(config, found)
    assert [(e.name, e.url) for e in entities] == [("Broken", None), ("UUID9", None)]
    assert "ignoring the imaging server URL" in caplog.text
