"""The pages in a real browser (Debian's headless Chromium) against a real running worker
(PostGIS, Redis), with simulated phones on the trip's websocket:

- a monitor logs in, sees a trip shared with them move on the map, live, and an SOS
  appear at once (banner, sound, the trip's card);
- a dispatcher acknowledges, dispatches and resolves an alert from the console's buttons,
  each with a note, and the API then reports each step; the CAP export downloads;
- a share link opens its trip without logging in, and once it has expired the page says
  so and shows nothing of the trip.

Each test also checks that its pages logged no error (CSP violations included) and asked
for nothing outside the service. The map and console screenshots of docs/ are taken here.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select
from web_harness import (
    WAIT_MS,
    Phone,
    Service,
    detour,
    file_trip,
    log_in,
    open_page,
    sample_route,
    screenshot_path,
)

from sigueme.store.db import make_engine, sessionmaker
from sigueme.store.models import Share

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

CONSOLE: ViewportSize = {"width": 1366, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'


async def test_a_monitor_sees_a_shared_trip_move_and_an_sos_appear(
    service: Service, browser: Browser
) -> None:
    traveller = await service.enrol(
        "traveller", "Ana Pérez", contact="+52 777 123 4567", profile="candidata"
    )
    monitor = await service.enrol("monitor", "Marta Ruiz")
    journey = await file_trip(service, traveller, "Mitin en Jiutepec")
    async with service.client(traveller) as c:
        marta = (await service.me(monitor))["name"]
        shared = await c.post(
            f"/v1/trips/{journey.trip_id}/shares", json={"user": marta, "hours": 4}
        )
        assert shared.status_code == 201, shared.text
    phone = await Phone.open(service, journey)
    try:
        await phone.send_until(time.time() - 60)

        watched = await open_page(browser, service)
        page = watched.page
        await log_in(page, service, monitor)
        await page.wait_for_url(f"{service.http}/map", timeout=WAIT_MS)
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        card = page.locator(f'[data-trip-id="{journey.trip_id}"]')
        await expect(card.locator("h3")).to_have_text("Mitin en Jiutepec")
        await expect(card.locator("[data-role=trip-status]")).to_have_text("en ruta")
        await expect(page.locator("#feed-state")).to_have_text("en vivo", timeout=WAIT_MS)
        before = await card.locator("[data-role=trip-progress]").inner_text()
        position = page.locator("path.leaflet-interactive").last
        await expect(position).to_be_visible()

        # The phone moves on: the card and the map follow, without a reload.
        await page.evaluate("window.__same_page = true")
        marker_before = await _position_marker(page)
        await phone.send(12)
        await expect(card.locator("[data-role=trip-progress]")).not_to_have_text(
            before, timeout=WAIT_MS
        )
        await expect(card.locator("[data-role=trip-last]")).to_contain_text("hace")
        assert await _position_marker(page) != marker_before
        assert await page.evaluate("window.__same_page === true")

        # SOS from the phone: a banner at once, a sound, and the trip's card says so.
        await phone.sos("Nos están siguiendo")
        banner = page.locator(".banner").first
        await expect(banner).to_contain_text("Botón de pánico (SOS)", timeout=WAIT_MS)
        await expect(banner).to_contain_text("Ana Pérez")
        await expect(banner).to_contain_text("abierta")
        await expect(card.locator(".trip-alerts")).to_contain_text("Botón de pánico (SOS)")
        assert int(await page.evaluate("document.body.dataset.alertSounds || '0'")) >= 1
        assert await page.title() == "¡Alerta! Botón de pánico (SOS) · Sígueme"
        assert await page.evaluate("document.body.dataset.pwned === undefined")
        assert await page.evaluate("window.__same_page === true")

        await page.screenshot(path=screenshot_path("mapa.png"))
        watched.check()
        await watched.context.close()
    finally:
        await phone.close()


async def _position_marker(page: Page) -> str:
    """The drawn path of the trip's live position (its ``d`` moves with it)."""
    return str(
        await page.evaluate(
            "(() => { const p = [...document.querySelectorAll('path.leaflet-interactive')]"
            ".filter((e) => e.getAttribute('stroke') === '#ffffff');"
            " return p.length ? p[p.length - 1].getAttribute('d') : ''; })()"
        )
    )


async def test_a_dispatcher_works_an_alert_from_the_console(
    service: Service, browser: Browser
) -> None:
    dispatcher = await service.enrol("dispatcher", "Diego Salgado")
    beto = await service.enrol(
        "traveller", "Beto Ramírez", contact="+52 777 555 0101", profile="candidato"
    )
    carla = await service.enrol(
        "traveller", "Carla Núñez", contact="+52 735 222 0202", profile="equipo de campaña"
    )
    sos_trip = await file_trip(service, beto, "Recorrido en Temixco", seed=2)
    off_trip = await file_trip(
        service,
        carla,
        "Traslado a Yautepec",
        seed=3,
        moves=detour(sample_route()),
    )
    sos = await Phone.open(service, sos_trip)
    off = await Phone.open(service, off_trip)
    try:
        await sos.send_until(time.time() - 30)
        alert_id = await sos.sos("Me detuvieron en un retén falso")
        await off.send_until(time.time() - 5)

        watched = await open_page(browser, service, viewport=CONSOLE)
        page = watched.page
        await log_in(page, service, dispatcher)
        await page.wait_for_url(f"{service.http}/console", timeout=WAIT_MS)
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        item = page.locator(f'.queue-item[data-alert-id="{alert_id}"]')
        await expect(item).to_contain_text("Botón de pánico (SOS)")
        await expect(item).to_contain_text("Beto Ramírez")
        await expect(item).to_contain_text("abierta hace")
        await expect(
            page.locator(".queue-item", has_text="Fuera de la ruta planeada")
        ).to_be_visible(timeout=WAIT_MS)
        # Most urgent first: the SOS (máxima) above the off-route alert (alta).
        titles = await page.locator(".queue-item .q-title").all_inner_texts()
        assert titles.index("Botón de pánico (SOS)") < titles.index("Fuera de la ruta planeada")
        assert int(await page.locator("#count-4").inner_text()) >= 1
        assert int(await page.locator("#count-3").inner_text()) >= 1

        # A new alert while the console is open: it joins the queue at once, with a sound.
        sounds = int(await page.evaluate("document.body.dataset.alertSounds || '0'"))
        carla_sos = await off.sos("Hay un bloqueo, nos hicieron bajar")
        flash = page.locator("#new-alert")
        await expect(flash).to_contain_text("Nueva alerta: Botón de pánico (SOS)", timeout=WAIT_MS)
        await expect(flash).to_contain_text("Carla Núñez")
        await expect(page.locator(f'.queue-item[data-alert-id="{carla_sos}"]')).to_be_visible()
        assert int(await page.evaluate("document.body.dataset.alertSounds")) > sounds
        await flash.get_by_role("button", name="Ocultar").click()

        await item.click()
        detail = page.locator("#detail")
        await expect(detail.locator("h2")).to_have_text("Botón de pánico (SOS)")
        await expect(detail).to_contain_text("+52 777 555 0101")
        await expect(detail.locator("[data-role=alert-status]")).to_have_text("abierta")

        async def step(button: str, note: str, **fields: str) -> None:
            await detail.get_by_role("button", name=button).click()
            dialog = page.locator("#action-dialog")
            await expect(dialog).to_be_visible()
            if "unit" in fields:
                await dialog.get_by_label("Unidad enviada").fill(fields["unit"])
            if "outcome" in fields:
                await dialog.get_by_label("Resultado").select_option(fields["outcome"])
            await dialog.get_by_label("Nota para el registro").fill(note)
            await dialog.locator("#action-submit").click()
            await expect(dialog).to_be_hidden(timeout=WAIT_MS)

        await step("Atender", "Llamando a la persona")
        await expect(detail.locator("[data-role=alert-status]")).to_have_text("atendida")
        assert (await _alert(service, dispatcher, alert_id))["status"] == "acknowledged"

        await step("Registrar unidad enviada", "Patrulla en camino", unit="MOR-114")
        await expect(detail.locator("[data-role=alert-status]")).to_have_text("unidad enviada")
        await expect(detail.locator("[data-role=unit] dd")).to_have_text("MOR-114")
        got = await _alert(service, dispatcher, alert_id)
        assert (got["status"], got["unit"]) == ("dispatched", "MOR-114")
        await expect(detail.locator(".history li")).to_have_count(len(got["history"]))
        await expect(page.locator("#toast")).to_be_hidden(timeout=WAIT_MS)
        await page.screenshot(path=screenshot_path("consola.png"))

        # CAP export: fetched with the token, downloaded as a file.
        async with page.expect_download() as download_info:
            await detail.get_by_role("button", name="Exportar CAP").click()
        download = await download_info.value
        assert download.suggested_filename == f"alerta-{alert_id}.xml"
        cap = (await download.path()).read_text(encoding="utf-8")
        assert "urn:oasis:names:tc:emergency:cap:1.2" in cap

        await step("Resolver", f"Persona auxiliada y a salvo {HOSTILE}", outcome="assisted")
        await expect(detail.locator("[data-role=alert-status]")).to_have_text("resuelta")
        got = await _alert(service, dispatcher, alert_id)
        assert (got["status"], got["outcome"]) == ("resolved", "assisted")
        notes = [h["note"] for h in got["history"] if h["note"]]
        assert notes[-3:] == [
            "Llamando a la persona",
            "MOR-114: Patrulla en camino",
            f"Persona auxiliada y a salvo {HOSTILE}",
        ]
        # The note is shown as text, never run as markup.
        await expect(detail.locator(".history q").last).to_have_text(
            f"Persona auxiliada y a salvo {HOSTILE}"
        )
        assert await page.evaluate("document.body.dataset.pwned === undefined")
        # Out of the live queue, and the buttons no longer apply.
        await expect(item).to_have_count(0, timeout=WAIT_MS)
        await expect(detail.get_by_role("button", name="Resolver")).to_be_disabled()

        # Filters: resolved alerts; by kind.
        await page.get_by_label("Estado", exact=True).select_option("resolved")
        await expect(item).to_be_visible(timeout=WAIT_MS)
        await page.get_by_label("Estado", exact=True).select_option("live")
        await page.get_by_label("Tipo", exact=True).select_option("off_route")
        await expect(page.locator(".queue-item .q-title")).to_have_text(
            ["Fuera de la ruta planeada"], timeout=WAIT_MS
        )
        # The area: the map's view goes to the API as the queue's bbox.
        async with page.expect_response(
            lambda r: "/v1/alerts?" in r.url and "bbox=" in r.url and r.status == 200
        ):
            await page.get_by_label("Solo el área visible del mapa").check()
        await expect(page.locator(".queue-item .q-title")).to_have_text(
            ["Fuera de la ruta planeada"], timeout=WAIT_MS
        )

        # On a phone the console stacks (queue, map, alert) and nothing is wider than it.
        await page.set_viewport_size(PHONE)
        await expect(page.locator(".queue-item").first).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        watched.check()
        await watched.context.close()
    finally:
        await sos.close()
        await off.close()


async def _alert(service: Service, token: str, alert_id: str) -> dict[str, Any]:
    async with service.client(token) as c:
        answer = await c.get(f"/v1/alerts/{alert_id}")
    assert answer.status_code == 200, answer.text
    alert: dict[str, Any] = answer.json()
    return alert


async def test_a_share_link_works_then_expires(service: Service, browser: Browser) -> None:
    traveller = await service.enrol("traveller", "Lucía Torres")
    journey = await file_trip(service, traveller, "Regreso a casa", seed=4)
    async with service.client(traveller) as c:
        made = await c.post(
            f"/v1/trips/{journey.trip_id}/links", json={"hours": 1, "label": "mamá"}
        )
    assert made.status_code == 201, made.text
    link = made.json()["link"]
    assert link.startswith(f"{service.http}/s/sgl_")
    phone = await Phone.open(service, journey)
    try:
        await phone.send_until(time.time() - 60)
        # On a phone: whoever gets the link opens it there.
        watched = await open_page(browser, service, viewport=PHONE)
        page = watched.page
        # The page's own 401s once the link has ended are expected.
        watched.expected_errors = ("401",)
        await page.goto(link)
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        card = page.locator(f'[data-trip-id="{journey.trip_id}"]')
        await expect(card.locator("h3")).to_have_text("Regreso a casa")
        await expect(card.locator("[data-role=trip-status]")).to_have_text("en ruta")
        await expect(page.locator("#feed-state")).to_have_text("en vivo", timeout=WAIT_MS)
        before = await card.locator("[data-role=trip-progress]").inner_text()
        await phone.send(12)
        await expect(card.locator("[data-role=trip-progress]")).not_to_have_text(
            before, timeout=WAIT_MS
        )
        assert await page.evaluate("sessionStorage.length") == 0
        # Nothing wider than the screen: the map above, the trip below.
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await page.screenshot(path=screenshot_path("enlace-telefono.png"))

        # The link ends (as time would end it): the page says so and keeps nothing.
        await _expire_links(service, journey.trip_id)
        await phone.send(2)
        ended = page.locator("[data-role=link-ended]")
        await expect(ended).to_contain_text("Este enlace ya no es válido", timeout=30_000)
        await expect(page.locator(".trip-card")).to_have_count(0)
        await expect(page.locator("path.leaflet-interactive")).to_have_count(0)

        # Opened again later: the same answer, straight away.
        await page.reload()
        await expect(page.locator("[data-role=link-ended]")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator(".trip-card")).to_have_count(0)
        await expect(page.get_by_text("Regreso a casa")).to_have_count(0)
        watched.check()
        await watched.context.close()
    finally:
        await phone.close()


async def _expire_links(service: Service, trip_id: str) -> None:
    """End the trip's links a second ago (the API never makes a share that has ended)."""
    engine = make_engine(service.database_url)
    try:
        async with sessionmaker(engine)() as session:
            shares = (await session.scalars(select(Share).where(Share.trip_id == trip_id))).all()
            assert shares
            for share in shares:
                share.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            await session.commit()
    finally:
        await engine.dispose()


async def test_a_traveller_opens_their_trip_and_hostile_text_stays_text(
    service: Service, browser: Browser
) -> None:
    """The trip's own page (an alert's ``map_url``), for its traveller, with a name and a
    label that are markup: they show as text and run nothing."""
    traveller = await service.enrol("traveller", f"Eva {HOSTILE}")
    journey = await file_trip(service, traveller, f"Visita {HOSTILE}", seed=5)
    phone = await Phone.open(service, journey)
    try:
        await phone.send_until(time.time() - 60)
        watched = await open_page(browser, service)
        page = watched.page
        await page.goto(f"{service.http}/map/trips/{journey.trip_id}")
        # Not logged in: to the log-in page, and back to the trip after it.
        await page.wait_for_url(re.compile(r"/entrar\?volver="), timeout=WAIT_MS)
        await page.get_by_label("Clave de acceso").fill(traveller)
        await page.get_by_role("button", name="Entrar").click()
        await page.wait_for_url(f"{service.http}/map/trips/{journey.trip_id}", timeout=WAIT_MS)
        card = page.locator(f'[data-trip-id="{journey.trip_id}"]')
        await expect(card.locator("h3")).to_have_text(f"Visita {HOSTILE}", timeout=WAIT_MS)
        await expect(page.locator("#who")).to_contain_text(f"Eva {HOSTILE}")
        await phone.sos("prueba")
        banner = page.locator(".banner").first
        await expect(banner).to_contain_text(f"Eva {HOSTILE}", timeout=WAIT_MS)
        await expect(banner).to_contain_text(f"Visita {HOSTILE}")
        assert await page.locator("img[src=x]").count() == 0
        assert await page.evaluate("document.body.dataset.pwned === undefined")
        # The token stays in this tab's storage, never in the address.
        assert traveller not in page.url
        assert await page.evaluate("sessionStorage.getItem('sigueme.token')") == traveller
        watched.check()
        await watched.context.close()
    finally:
        await phone.close()
