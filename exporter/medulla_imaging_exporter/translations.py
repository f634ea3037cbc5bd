"""French and English texts of the status page, and the units they are written in.

The status names, their meanings and the recommended actions are copied word for
word from Medulla's user guide (its French and English "Imaging" pages), so that
the person on call reads what Medulla's own page and documentation say.
"""

from __future__ import annotations

from typing import Literal

from medulla_imaging_exporter.model import Status

Language = Literal["fr", "en"]
_BY_TAG: dict[str, Language] = {"en": "en", "fr": "fr"}
DEFAULT_LANGUAGE: Language = "en"

TEXTS: dict[Language, dict[str, str]] = {
    "fr": {
        "title": "Statut du serveur d'imaging",
        "selected_entity": "Entité sélectionnée",
        "all_entities": "Toutes les entités",
        "show": "Afficher",
        "unknown_entity": "Entité inconnue : {name}",
        "server_of": "Serveur d'imaging de l'entité {name}",
        "cannot_connect": (
            "Impossible de se connecter au serveur d'imaging associé à l'entité sélectionnée."
        ),
        "status": "Statut",
        "status.available": "Disponible",
        "status.offline": "Hors ligne",
        "status.connection_error": "Erreur de connexion",
        "status.not_linked": "Pas de serveur d'imaging",
        "meaning.available": (
            "Le serveur est en fonctionnement. "
            "Vous pouvez procéder à une création d'image ou à un déploiement."
        ),
        "meaning.offline": (
            "Le serveur ne répond pas. Aucune opération d'imaging ne pourra être réalisée."
        ),
        "meaning.connection_error": (
            "Le serveur est joignable, mais la connexion échoue (souvent liée à un problème "
            "de configuration ou de communication réseau). Les opérations sont bloquées."
        ),
        "meaning.not_linked": "Pas de serveur d'imaging disponible pour l'association.",
        "recommended_action": "Action recommandée :",
        "action.offline": "contacter l'administrateur ou le support technique.",
        "action.connection_error": "signaler le problème à l'équipe technique.",
        "before_imaging": (
            "Avant toute opération d'imaging, vérifiez que vous êtes bien positionné sur la "
            "bonne entité et que le statut du serveur est indiqué comme « Disponible »."
        ),
        "disk": "Espace disque disponible sur le serveur",
        "used_available": "{used} utilisés, {avail} disponibles",
        "masters_storage": "Stockage des masters",
        "masters_storage_value": "{percent} % utilisé, {avail} disponibles",
        "load": "Charge du serveur",
        "up_since": "Démarré depuis",
        "memory": "Mémoire",
        "memory_value": "{used} utilisée / {cache} tampons et cache / {total} au total",
        "swap": "Swap",
        "swap_value": "{used} utilisé / {total} au total",
        "no_swap": "pas de swap",
        "stats": "Statistiques Entité {name}",
        "clients_registered": "{n} client(s) enregistré(s)",
        "rescue": "{rescue} / {total} le client dispose d'une image de secours",
        "masters_available": "{n} masters sont disponibles",
        "section_failed": "Section « {section} » illisible : {error}",
        "last_probe": "Dernière vérification",
        "probe_time": "{time}, durée {duration}",
        "reason": "Raison de l'échec",
        "probe_links": "Détails de la vérification",
        "recent": "Vérifications récentes",
        "recent_note": (
            "Les plus récentes d'abord ; les échecs restent même après de nombreux succès."
        ),
        "col.time": "Heure",
        "col.entity": "Entité",
        "col.status": "Statut",
        "col.reason": "Raison",
        "col.duration": "Durée",
        "col.details": "Détails",
        "no_probes": "Aucune vérification pour l'instant.",
        "metrics": "Métriques",
        "refresh": "Cette page se recharge toutes les {seconds} secondes.",
        "unit.B": "o",
        "unit.KiB": "Ko",
        "unit.MiB": "Mo",
        "unit.GiB": "Go",
        "unit.TiB": "To",
        "unit.PiB": "Po",
        "day": "jour",
        "days": "jours",
        "hour": "heure",
        "hours": "heures",
        "minute": "minute",
        "minutes": "minutes",
    },
    "en": {
        "title": "Imaging Server Status",
        "selected_entity": "Selected Entity",
        "all_entities": "All entities",
        "show": "Show",
        "unknown_entity": "Unknown entity: {name}",
        "server_of": "Imaging server of the entity {name}",
        "cannot_connect": "Can't connect to the imaging server linked to the selected entity.",
        "status": "Status",
        "status.available": "Available",
        "status.offline": "Offline",
        "status.connection_error": "Connection error",
        "status.not_linked": "No imaging server",
        "meaning.available": (
            "The server is operational. You can proceed with image creation or deployment."
        ),
        "meaning.offline": "The server is not responding. No imaging operations can be performed.",
        "meaning.connection_error": (
            "The server is reachable, but the connection fails (often due to a configuration "
            "or network communication issue). Operations are blocked."
        ),
        "meaning.not_linked": "No imaging server available for association.",
        "recommended_action": "Recommended action:",
        "action.offline": "contact the administrator or technical support.",
        "action.connection_error": "report the issue to the technical team.",
        "before_imaging": (
            "Before performing any imaging operation, verify that you are on the correct "
            "entity and that the server status is listed as “Available.”"
        ),
        "disk": "Available disk space on the server",
        "used_available": "{used} used, {avail} available",
        "masters_storage": "Masters storage",
        "masters_storage_value": "{percent} % used, {avail} available",
        "load": "Server load",
        "up_since": "Up since",
        "memory": "Memory",
        "memory_value": "{used} used / {cache} buffers/cache / {total} total",
        "swap": "Swap",
        "swap_value": "{used} used / {total} total",
        "no_swap": "no swap",
        "stats": "{name} entity statistics",
        "clients_registered": "{n} client(s) registered",
        "rescue": "{rescue} / {total} client(s) have a backup image",
        "masters_available": "{n} masters available",
        "section_failed": "Could not read the “{section}” section: {error}",
        "last_probe": "Last probe",
        "probe_time": "{time}, took {duration}",
        "reason": "Failure reason",
        "probe_links": "Probe details",
        "recent": "Recent probes",
        "recent_note": "Newest first; failures are kept even when many successes follow.",
        "col.time": "Time",
        "col.entity": "Entity",
        "col.status": "Status",
        "col.reason": "Reason",
        "col.duration": "Duration",
        "col.details": "Details",
        "no_probes": "No probe yet.",
        "metrics": "Metrics",
        "refresh": "This page reloads itself every {seconds} seconds.",
        "unit.B": "B",
        "unit.KiB": "KiB",
        "unit.MiB": "MiB",
        "unit.GiB": "GiB",
        "unit.TiB": "TiB",
        "unit.PiB": "PiB",
        "day": "day",
        "days": "days",
        "hour": "hour",
        "hours": "hours",
        "minute": "minute",
        "minutes": "minutes",
    },
}

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def choose_language(query: str | None, accept_language: str | None) -> Language:
    """``?lang=`` first, then the best-weighted language of ``Accept-Language``."""
    if query in _BY_TAG:
        return _BY_TAG[query]
    best: tuple[float, int, Language] | None = None
    for index, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        lang = _BY_TAG.get(tag.strip().lower().split("-")[0])
        if lang is None:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        # Highest weight wins; on a tie, the first listed (hence -index).
        if weight > 0 and (best is None or (weight, -index) > best[:2]):
            best = (weight, -index, lang)
    return best[2] if best else DEFAULT_LANGUAGE


def text(lang: Language, key: str, **values: object) -> str:
    """A plain-text sentence; the page escapes it like any other value."""
    template = TEXTS[lang][key]
    return template.format(**values) if values else template


def status_label(lang: Language, status: Status) -> str:
    return TEXTS[lang][f"status.{status.value}"]


def format_bytes(lang: Language, value: float) -> str:
    """Binary units with one decimal: ``16.5 GiB`` in English, ``16.5 Go`` in French.

    The decimal point is kept in French too, as on Medulla's own page (``16.5Go``).
    """
    unit = 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    number = f"{value:.0f}" if unit == 0 else f"{value:.1f}"
    return f"{number} {TEXTS[lang]['unit.' + _UNITS[unit]]}"


def _plural(lang: Language, count: int, singular: str) -> str:
    # French keeps the singular for 0 and 1 ("0 heure"), English only for 1 ("0 hours").
    many = count >= 2 if lang == "fr" else count != 1
    return TEXTS[lang][singular + "s" if many else singular]


def format_uptime(lang: Language, seconds: float) -> str:
    """``13 days 0 hours 6 minutes`` / ``13 jours 0 heure 6 minutes``, as Medulla's page."""
    minutes_total = int(seconds // 60)
    days, rest = divmod(minutes_total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return " ".join(
        f"{n} {_plural(lang, n, unit)}"
        for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
    )


def format_duration(seconds: float) -> str:
    """A probe's duration: milliseconds below one second, else seconds."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
