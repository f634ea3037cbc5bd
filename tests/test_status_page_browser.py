"""The status page in Debian's Chromium, driven by Playwright, against the real CLI.

Screenshots go to test-artifacts/ (gitignored); docs/status-page.png is one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from tests.helpers import REPO, cli_exporter, demo_exporter, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"

# The seed page's four entities: status, English label, colour of the badge.
DEMO = {
    "Siveo Medulla": ("not_linked", "No imaging server", "rgb(117, 117, 117)"),
    "Public": ("available", "Available", "rgb(46, 125, 50)"),
    "Private": ("connection_error", "Connection error", "rgb(230, 81, 0)"),
    "General": ("offline", "Offline", "rgb(198, 40, 40)"),
}
HOSTILE = "<script>alert(1)</script>"
QUOTE = '"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_exporter(tmp_path_factory.mktemp("demo")) as base:
        yield base


@dataclass
class Visit:
    """A page and everything it did: requests, dialogs (an injected alert() would open one)."""

    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    seen = Visit(page)
    page.on("request", lambda request: seen.requests.append(request.url))

    def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield seen
    finally:
        context.close()


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def test_demo_shows_every_entity_as_medullas_page(demo: str, visit: Visit) -> None:
    page = visit.page
    response = page.goto(f"{demo}/")
    assert response is not None and response.status == 200
    assert len(response.body()) < 32_000, "a light page"
    cards = page.locator("section.entity")
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.entity)") == list(DEMO)
    for name, (status, label, colour) in DEMO.items():
        card = page.locator(f"section.entity[data-entity={json.dumps(name)}]")
        assert card.get_attribute("data-status") == status
        badge = card.locator(".badge")
        assert badge.inner_text() == label
        assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == colour

    public = page.locator('section.entity[data-entity="Public"]')
    root = public.locator('.fs[data-mount="/"]')
    assert root.locator(".device").inner_text() == "/dev/vda3"
    assert root.locator(".value").inner_text() == "16.5 GiB used, 76.7 GiB available"
    fill = root.locator(".bar .used").bounding_box()
    bar = root.locator(".bar").bounding_box()
    assert fill is not None and bar is not None
    assert 0.16 < fill["width"] / bar["width"] < 0.19  # 16.5 of 93.2 GiB
    efi = public.locator('.fs[data-mount="/boot/efi"] .value')
    assert efi.inner_text() == "11.6 MiB used, 112.1 MiB available"
    assert public.locator(".masters .value").inner_text() == "18 % used, 76.7 GiB available"
    assert public.locator(".uptime .value").inner_text() == "13 days 0 hours 6 minutes"
    assert public.locator(".memory .value").inner_text() == (
        "3.1 GiB used / 4.0 GiB buffers/cache / 7.8 GiB total"
    )
    assert public.locator(".swap .value").inner_text() == "512.0 MiB used / 2.0 GiB total"
    assert public.locator(".stats li").all_inner_texts() == [
        "0 client(s) registered",
        "0 / 0 client(s) have a backup image",
        "1 masters available",
    ]
    assert "Last probe: " in public.locator(".probe").inner_text()

    private = page.locator('section.entity[data-entity="Private"]')
    assert private.locator(".action").inner_text() == (
        "Recommended action: report the issue to the technical team."
    )
    assert "Failure reason: http_404 HTTP status 404" in private.locator(".probe").inner_text()
    general = page.locator('section.entity[data-entity="General"]')
    assert general.locator(".action").inner_text() == (
        "Recommended action: contact the administrator or technical support."
    )
    assert "Failure reason: refused" in general.locator(".probe").inner_text()
    root_entity = page.locator('section.entity[data-entity="Siveo Medulla"]')
    assert "No imaging server available for association." in root_entity.inner_text()

    # Recent probes, newest first, the failures among them.
    rows = page.locator("#recent tbody tr")
    ids = [int(i) for i in rows.evaluate_all("rs => rs.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 3
    failed = page.locator("#recent tr.failed td:nth-child(2)").all_inner_texts()
    assert {"Private", "General"} <= set(failed)

    assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
    assert page.locator("script").count() == 0
    assert visit.requests and all(u.startswith(demo + "/") for u in visit.requests)
    _screenshot(page, "status-page-en.png")

    # The links: /metrics and each entity's debug view.
    page.click('section.entity[data-entity="Public"] .links a:text("debug")')
    assert page.url == f"{demo}/probe?entity=Public&debug=true"
    debug = page.inner_text("body")
    assert "Status: available" in debug and "HTTP status: 200" in debug
    assert "medulla_imaging_uptime_seconds" in debug
    page.go_back()
    page.click('nav a[href="metrics"]')
    assert 'medulla_imaging_server_status{entity="General",status="offline"} 1.0' in (
        page.inner_text("body")
    )
    assert not visit.dialogs


def test_french_page(demo: str, browser: Browser) -> None:
    context = browser.new_context(locale="fr-FR", viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{demo}/")
        assert page.locator("html").get_attribute("lang") == "fr"
        assert page.locator("h1").inner_text() == "Statut du serveur d'imaging"
        badges = page.locator("section.entity .badge").all_inner_texts()
        assert badges == [
            "Pas de serveur d'imaging",
            "Disponible",
            "Erreur de connexion",
            "Hors ligne",
        ]
        public = page.locator('section.entity[data-entity="Public"]')
        assert public.locator('.fs[data-mount="/"] .value').inner_text() == (
            "16.5 Go utilisés, 76.7 Go disponibles"
        )
        assert public.locator(".uptime").inner_text() == (
            "Démarré depuis: 13 jours 0 heure 6 minutes"
        )
        assert public.locator("h3").all_inner_texts() == [
            "Espace disque disponible sur le serveur",
            "Charge du serveur",
            "Statistiques Entité Public",
        ]
        assert "1 masters sont disponibles" in public.locator(".stats").inner_text()
        general = page.locator('section.entity[data-entity="General"]')
        assert general.locator(".action").inner_text() == (
            "Action recommandée : contacter l'administrateur ou le support technique."
        )
        assert "Le serveur ne répond pas." in general.inner_text()
        private = page.locator('section.entity[data-entity="Private"]')
        assert private.locator(".error").inner_text() == (
            "Impossible de se connecter au serveur d'imaging associé à l'entité sélectionnée."
        )
        _screenshot(page, "status-page-fr.png")
        # The language link switches to English and keeps it in the selector.
        page.click('nav a[hreflang="en"]')
        assert page.url == f"{demo}/?lang=en"
        assert page.locator("h1").inner_text() == "Imaging Server Status"
    finally:
        context.close()


def test_lang_query_overrides_the_browser(demo: str, visit: Visit) -> None:
    visit.page.goto(f"{demo}/?lang=fr")
    assert visit.page.locator('section.entity[data-entity="Public"] .badge').inner_text() == (
        "Disponible"
    )


def test_selector_narrows_to_one_entity(demo: str, visit: Visit) -> None:
    page = visit.page
    page.goto(f"{demo}/?lang=fr")
    page.select_option("#entity", "Public")
    page.click("form.selector button")
    page.wait_for_url("**/?entity=Public&lang=fr")
    cards = page.locator("section.entity")
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.entity)") == ["Public"]
    assert cards.locator(".badge").inner_text() == "Disponible"
    assert page.locator("#entity").input_value() == "Public"
    entities = set(page.locator("#recent td:nth-child(2)").all_inner_texts())
    assert entities == {"Public"}
    _screenshot(page, "status-page-selected.png")
    page.select_option("#entity", "")
    page.click("form.selector button")
    page.wait_for_url("**/?entity=&lang=fr")
    assert page.locator("section.entity").count() == len(DEMO)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real CLI on a configuration whose entity names are HTML and whose URL has a password."""
    tmp = tmp_path_factory.mktemp("hostile")
    config = tmp / "config.yml"
    url = f"https://zorglub:s3cret@127.0.0.1:{free_port()}/imaging_api"
    config.write_text(
        "entities:\n"
        f"  - name: {json.dumps(HOSTILE)}\n"
        f"  - name: {json.dumps(QUOTE)}\n"
        f"    url: {json.dumps(url)}\n"
        "    timeout: 2s\n",
        encoding="utf-8",
    )
    with cli_exporter(tmp, "--config.file", str(config)) as base:
        yield base


def test_hostile_entity_names_render_as_text(hostile: str, visit: Visit) -> None:
    page = visit.page
    page.goto(f"{hostile}/")
    headings = page.locator("section.entity h2").all_inner_texts()
    assert headings == [
        f"Imaging server of the entity {HOSTILE}",
        f"Imaging server of the entity {QUOTE}",
    ]
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert page.locator("section.entity .badge").all_inner_texts() == [
        "No imaging server",
        "Offline",
    ]
    html = page.content()
    assert "s3cret" not in html and "zorglub" not in html
    _screenshot(page, "status-page-hostile.png")

    page.select_option("#entity", HOSTILE)
    page.click("form.selector button")
    page.wait_for_load_state()
    assert page.locator("section.entity h2").all_inner_texts() == [
        f"Imaging server of the entity {HOSTILE}"
    ]
    assert page.locator("#entity").input_value() == HOSTILE

    page.goto(f"{hostile}/")
    page.click(f'section.entity[data-entity={json.dumps(QUOTE)}] .links a:text("debug")')
    debug = page.inner_text("body")
    assert f"Probe of entity {QUOTE!r}" in debug and "Reason: refused" in debug
    assert "s3cret" not in debug and "zorglub" not in debug
    assert page.locator("img").count() == 0
    assert not visit.dialogs
    assert all(u.startswith(hostile + "/") for u in visit.requests)
