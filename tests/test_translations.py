from __future__ import annotations

import pytest

from medulla_imaging_exporter.model import Status
from medulla_imaging_exporter.simulator import PUBLIC_UPTIME
from medulla_imaging_exporter.translations import (
    TEXTS,
    Language,
    choose_language,
    format_bytes,
    format_duration,
    format_uptime,
    status_label,
    text,
)

KIB = 1024


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        (None, None, "en"),
        (None, "", "en"),
        (None, "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        (None, "de-DE,de;q=0.9,fr;q=0.5,en;q=0.4", "fr"),
        (None, "en;q=0.5, fr;q=0.8", "fr"),
        (None, "fr;q=0, en", "en"),
        (None, "fr;q=bogus, en;q=0.1", "en"),
        (None, "de, it", "en"),
        (None, "FR-ca", "fr"),
        (None, "en, fr", "en"),
        ("fr", "en", "fr"),
        ("en", "fr", "en"),
        ("xx", "fr", "fr"),
    ],
)
def test_choose_language(query: str | None, header: str | None, expected: str) -> None:
    assert choose_language(query, header) == expected


def test_both_languages_have_the_same_texts() -> None:
    assert TEXTS["fr"].keys() == TEXTS["en"].keys()


def test_status_labels_are_the_seed_pages_words() -> None:
    assert [status_label("fr", s) for s in Status][:3] == [
        "Disponible",
        "Hors ligne",
        "Erreur de connexion",
    ]
    assert [status_label("en", s) for s in Status][:3] == [
        "Available",
        "Offline",
        "Connection error",
    ]
    assert text("fr", "action.offline") == "contacter l'administrateur ou le support technique."
    assert text("en", "action.connection_error") == "report the issue to the technical team."


@pytest.mark.parametrize(
    ("lang", "value", "expected"),
    [
        # The "Public" screenshot: /dev/vda3 16.5Go/76.7Go, /boot/efi 11.6Mo/112.1Mo (df -k).
        ("en", 17301504 * KIB, "16.5 GiB"),
        ("en", 80425780 * KIB, "76.7 GiB"),
        ("fr", 17301504 * KIB, "16.5 Go"),
        ("fr", 114790 * KIB, "112.1 Mo"),
        ("en", 11878 * KIB, "11.6 MiB"),
        ("en", 0, "0 B"),
        ("fr", 512, "512 o"),
        ("en", 1023, "1023 B"),
        ("en", 1024, "1.0 KiB"),
        ("en", 3 * 1024**4, "3.0 TiB"),
        ("en", 5 * 1024**6, "5120.0 PiB"),
    ],
)
def test_format_bytes(lang: Language, value: int, expected: str) -> None:
    assert format_bytes(lang, value) == expected


@pytest.mark.parametrize(
    ("lang", "seconds", "expected"),
    [
        ("en", float(PUBLIC_UPTIME.split()[0]), "13 days 0 hours 6 minutes"),
        ("fr", float(PUBLIC_UPTIME.split()[0]), "13 jours 0 heure 6 minutes"),
        ("en", 86400 + 3600 + 60, "1 day 1 hour 1 minute"),
        ("fr", 86400 + 3600 + 60, "1 jour 1 heure 1 minute"),
        ("fr", 2 * 86400 + 2 * 3600 + 2 * 60 + 59, "2 jours 2 heures 2 minutes"),
        ("en", 59.9, "0 days 0 hours 0 minutes"),
    ],
)
def test_format_uptime(lang: Language, seconds: float, expected: str) -> None:
    assert format_uptime(lang, seconds) == expected


def test_format_duration() -> None:
    assert format_duration(0.0123) == "12 ms"
    assert format_duration(1.5) == "1.50 s"
