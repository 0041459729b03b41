"""Citizens' reports (SeguriChat) in the dispatchers' console, in a real browser (Debian's
headless Chromium) against a real running worker (PostGIS, Redis):

- reports filed through ``POST /v1/reports`` (one with a photo, one without a place on
  the map, one joined to a trip) are in the queue beside a trip's SOS, each with its
  category, folio and channel;
- opening one shows its text (as text, never markup), its facts and its files with their
  SHA-256; a photo, fetched with the token, shows inline from a ``blob:`` URL (the CSP
  lets it in) and its bytes match the SHA-256 taken on arrival;
- who reported it shows only after a reason is given (and the API's history records it);
  *Turnar a la FEDE* is there only for an electoral category, and follows a category
  changed from the console;
- a report with no position says so on the map, with the place it names; a report joined
  to a trip shows the trip and the report;
- a new report without a trip (not on the live feed) reaches the open console by the
  queue's periodic refresh, with the new-alert strip.

No page may log an error (CSP violations included) or ask for anything outside the
service. The screenshot ``docs/screenshots/consola-reporte.png`` is taken here.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from typing import Any

import pytest
from PIL import ExifTags, Image
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect
from web_harness import WAIT_MS, Phone, Service, file_trip, log_in, open_page, screenshot_path

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

CONSOLE: ViewportSize = {"width": 1366, "height": 1000}
TALL: ViewportSize = {"width": 1366, "height": 1700}
PHONE: ViewportSize = {"width": 390, "height": 844}
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'
# Cuernavaca: by the Palacio de Cortés, and where the photo's own GPS says it was taken.
PALACIO = (18.9219, -99.2340)
PHOTO_AT = (18.9242, -99.2216)
# The queue refreshes every 20 s: a report without a trip arrives by it, not by the feed.
REFRESH_WAIT_MS = 35_000


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return (float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4))


def photo(gps: tuple[float, float] | None = None) -> bytes:
    """A small real JPEG (a dusk-coloured gradient with a 'street'), with GPS EXIF when
    ``gps`` is given, like a phone's photo."""
    width, height = 320, 200
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (60, 70, 80)
            if y > 150 and abs(x - 160) < (y - 120)
            else (40 + y // 2, 60 + x // 8, 140)
            for y in range(height)
            for x in range(width)
        ]
    )
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Telefono de prueba"
    if gps is not None:
        lat, lon = gps
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(
            {
                ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
                ExifTags.GPS.GPSLatitude: _dms(lat),
                ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
                ExifTags.GPS.GPSLongitude: _dms(lon),
            }
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


async def _report(
    service: Service, token: str, fields: dict[str, Any], files: Any = None
) -> dict[str, Any]:
    """File a report as multipart (with ``files``) or as JSON; the 201's body."""
    async with service.client(token) as c:
        if files:
            answer = await c.post(
                "/v1/reports", data={k: str(v) for k, v in fields.items()}, files=files
            )
        else:
            answer = await c.post("/v1/reports", json=fields)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _get(service: Service, token: str, path: str) -> dict[str, Any]:
    async with service.client(token) as c:
        answer = await c.get(path)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _open(page: Page, alert_id: str) -> Locator:
    """Open an alert from the queue: the detail pane, once it shows that alert."""
    await page.locator(f'.queue-item[data-alert-id="{alert_id}"]').click()
    await expect(
        page.locator(f'.queue-item.is-selected[data-alert-id="{alert_id}"]')
    ).to_be_visible()
    detail = page.locator("#detail")
    await expect(detail.locator("h2")).to_be_visible()
    return detail


async def test_a_dispatcher_works_citizens_reports_beside_trip_alerts(
    service: Service, browser: Browser
) -> None:
    dispatcher = await service.enrol("dispatcher", "Rosa Ocampo")
    julia = await service.enrol(
        "traveller", "Julia Mendoza", contact="+52 777 900 1122", profile="ciudadana"
    )
    beto = await service.enrol(
        "traveller", "Beto Ramírez", contact="+52 777 555 0101", profile="candidato"
    )
    # The dispatcher works the Cuernavaca channel (and the general queue).
    rosa = (await service.me(dispatcher))["name"]
    async with service.client(service.admin_token) as admin:
        made = await admin.post(
            "/v1/channels",
            json={"name": "Cuernavaca", "kind": "municipality", "description": "Municipio"},
        )
        assert made.status_code == 201, made.text
        joined = await admin.put(f"/v1/channels/{made.json()['id']}/members/{rosa}")
        assert joined.status_code == 204, joined.text

    # A trip's SOS, and reports: a threat with a photo, an anonymous vote-buying report
    # with only a place in words, and a note Beto joins to his trip.
    journey = await file_trip(service, beto, "Recorrido en Temixco", seed=7)
    phone = await Phone.open(service, journey)
    try:
        await phone.send_until(time.time() - 30)
        sos_id = await phone.sos("Nos cerraron el paso")
        picture = photo(gps=PHOTO_AT)
        threat_text = "Nos amenazaron afuera del mitin.\nDijeron que volverían esta noche."
        threat = await _report(
            service,
            julia,
            {
                "text": threat_text,
                "category": "threat",
                "lat": PALACIO[0],
                "lon": PALACIO[1],
                "channel": "Cuernavaca",
            },
            [("media", ("foto.jpg", picture, "image/jpeg"))],
        )
        assert threat["media"][0]["sha256"] == hashlib.sha256(picture).hexdigest()
        votes_text = f"Están entregando despensas a cambio de la credencial. {HOSTILE}"
        votes = await _report(
            service,
            julia,
            {
                "text": votes_text,
                "category": "vote_buying_coercion",
                "place": "Afuera de la escuela primaria Benito Juárez, Jiutepec",
                "anonymous": True,
            },
        )
        joined_report = await _report(
            service,
            beto,
            {
                "text": "Una camioneta gris nos sigue desde el mitin.",
                "category": "threat",
                "trip_id": journey.trip_id,
            },
        )

        watched = await open_page(browser, service, viewport=CONSOLE)
        page = watched.page
        await log_in(page, service, dispatcher)
        await page.wait_for_url(f"{service.http}/console", timeout=WAIT_MS)
        await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)

        # -- the queue: reports beside the SOS --------------------------------------------
        sos_row = page.locator(f'.queue-item[data-alert-id="{sos_id}"]')
        await expect(sos_row).to_contain_text("Botón de pánico (SOS)")
        await expect(sos_row).to_contain_text("Beto Ramírez")
        threat_row = page.locator(f'.queue-item[data-alert-id="{threat["alert_id"]}"]')
        await expect(threat_row.locator(".q-title")).to_have_text("Reporte ciudadano (SeguriChat)")
        await expect(threat_row.locator("[data-role=report-line]")).to_have_text(
            f"Amenaza · Folio {threat['folio']} · Canal Cuernavaca · vía API"
        )
        await expect(threat_row).to_contain_text("abierta hace")
        votes_row = page.locator(f'.queue-item[data-alert-id="{votes["alert_id"]}"]')
        await expect(votes_row.locator("[data-role=report-line]")).to_have_text(
            f"Compra o coacción del voto · Folio {votes['folio']} · Cola general · vía API"
        )
        joined_row = page.locator(f'.queue-item[data-alert-id="{joined_report["alert_id"]}"]')
        await expect(joined_row).to_contain_text("Beto Ramírez · Recorrido en Temixco")
        await expect(joined_row).to_contain_text(f"Folio {joined_report['folio']}")
        # Who reported is nowhere in the queue.
        await expect(page.locator("#queue")).not_to_contain_text("Julia")
        kinds = await page.get_by_label("Tipo", exact=True).locator("option").all_inner_texts()
        assert "Reporte ciudadano" in kinds

        # -- a report with a photo ----------------------------------------------------------
        detail = await _open(page, threat["alert_id"])
        await expect(detail.locator("h2")).to_have_text("Reporte ciudadano (SeguriChat)")
        await expect(detail.locator("[data-role=report-text]")).to_have_text(threat_text)
        await expect(detail.locator("[data-role=report-category] dd")).to_have_text("Amenaza")
        await expect(detail.locator("[data-role=report-folio] dd")).to_have_text(threat["folio"])
        await expect(detail.locator("[data-role=report-channel] dd")).to_have_text("Cuernavaca")
        await expect(detail.locator("[data-role=report-source] dd")).to_have_text("API")
        await expect(detail.locator("[data-role=report-identity] dd")).to_contain_text("Protegida")
        await expect(detail.locator("[data-role=report-position] dd")).to_contain_text(
            f"{PALACIO[0]:.5f}, {PALACIO[1]:.5f}"
        )
        await expect(detail).not_to_contain_text("Julia")
        await expect(page.locator("[data-role=no-location]")).to_have_count(0)
        # An electoral crime it is not: no referral to FEDE.
        await expect(detail.get_by_role("button", name="Turnar a la FEDE")).to_have_count(0)
        for name in ("Atender", "Registrar unidad enviada", "Resolver", "Ver quién reportó"):
            await expect(detail.get_by_role("button", name=name, exact=True)).to_be_enabled()

        # Its file: kind, type, size, SHA-256; shown inline once asked for.
        item = detail.locator(".media-item")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text("Foto 1")
        await expect(item).to_contain_text("image/jpeg")
        await expect(item.locator("[data-role=sha256]")).to_have_text(threat["media"][0]["sha256"])
        await item.get_by_role("button", name="Ver foto").click()
        image = item.locator("img[data-role=media-image]")
        await expect(image).to_be_visible(timeout=WAIT_MS)
        await expect(image).to_have_attribute("src", re.compile(r"^blob:"))
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await image.element_handle()
        )
        assert await image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]") == [320, 200]
        await expect(item.locator("[data-role=media-verified]")).to_have_text(
            "Huella SHA-256 comprobada en este equipo"
        )
        media_id = await item.get_attribute("data-media-id")
        await expect(item.locator("[data-role=download-media]")).to_have_attribute(
            "download", f"{threat['folio']}-{media_id}.jpeg"
        )
        # The screenshot: a taller window, so the report, its facts and its photo show.
        await page.set_viewport_size(TALL)
        await detail.evaluate("(node) => node.scrollTo(0, 0)")
        await expect(image).to_be_in_viewport()
        await page.screenshot(path=screenshot_path("consola-reporte.png"))
        await page.set_viewport_size(CONSOLE)

        # Who reported it: only with a reason, and the history says it was looked at.
        await detail.get_by_role("button", name="Ver quién reportó").click()
        dialog = page.locator("#action-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.get_by_text("auditoría")).to_be_visible()
        await expect(dialog.get_by_label("Nota para el registro")).to_be_hidden()
        reason = dialog.get_by_label("Motivo de la consulta")
        await expect(reason).to_be_visible()
        await dialog.locator("#action-submit").click()
        await expect(dialog).to_be_visible()
        assert await reason.evaluate("(node) => node.validity.valueMissing")
        await expect(detail.locator("[data-role=reporter]")).to_have_count(0)
        await reason.fill("Llamar a quien denuncia para ampliar la declaración")
        await dialog.locator("#action-submit").click()
        await expect(dialog).to_be_hidden(timeout=WAIT_MS)
        reporter = detail.locator("[data-role=reporter]")
        await expect(reporter.locator("[data-role=reporter-name] dd")).to_have_text("Julia Mendoza")
        await expect(reporter.locator("[data-role=reporter-contact] dd")).to_have_text(
            "+52 777 900 1122"
        )
        await expect(reporter).to_contain_text("auditoría")
        await expect(detail.locator('.history li[data-action="revealed"]')).to_contain_text(
            "Llamar a quien denuncia"
        )
        alert = await _get(service, dispatcher, f"/v1/alerts/{threat['alert_id']}")
        assert "revealed" in [h["action"] for h in alert["history"]]

        # The category: political violence against women is an electoral crime, so the
        # referral to FEDE appears; the severity follows the category.
        await detail.get_by_role("button", name="Cambiar categoría").click()
        await expect(dialog).to_be_visible()
        category = dialog.get_by_label("Categoría")
        assert await category.input_value() == "threat"
        options = await category.locator("option").all_inner_texts()
        assert len(options) == 7
        assert "Violencia política contra las mujeres en razón de género" in options
        await category.select_option("political_violence_women")
        await dialog.locator("#action-submit").click()
        await expect(dialog).to_be_hidden(timeout=WAIT_MS)
        await expect(detail.locator("[data-role=report-category] dd")).to_have_text(
            "Violencia política contra las mujeres en razón de género"
        )
        await expect(detail.get_by_role("button", name="Turnar a la FEDE")).to_be_visible()
        shown = await _get(service, dispatcher, f"/v1/reports/{threat['id']}")
        assert (shown["category"], shown["electoral"]) == ("political_violence_women", True)
        # The reporter's identity stays on screen only while this report is open.
        assert await reporter.count() == 1

        # -- a report with no position: the map says so, with the place it names ----------
        detail = await _open(page, votes["alert_id"])
        # Its text is text: the markup in it shows as such and runs nothing.
        await expect(detail.locator("[data-role=report-text]")).to_have_text(votes_text)
        assert await page.locator("img[src=x]").count() == 0
        note = page.locator("#map [data-role=no-location]")
        await expect(note).to_contain_text("Sin ubicación")
        await expect(note).to_contain_text("Afuera de la escuela primaria Benito Juárez, Jiutepec")
        await expect(detail.locator("[data-role=report-position] dd")).to_have_text("Sin ubicación")
        await expect(detail.locator("[data-role=report-identity] dd")).to_contain_text("Anónimo")
        await expect(detail.locator("[data-role=reporter]")).to_have_count(0)
        await expect(detail).to_contain_text("Sin archivos adjuntos.")
        # An electoral crime: referred to FEDE with a note, once.
        await detail.get_by_role("button", name="Turnar a la FEDE").click()
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("Nota para el registro").fill("Posible compra de votos")
        await dialog.locator("#action-submit").click()
        await expect(dialog).to_be_hidden(timeout=WAIT_MS)
        await expect(detail.locator("[data-role=report-fede] dd")).to_contain_text("Turnado el")
        await expect(detail.get_by_role("button", name="Turnar a la FEDE")).to_be_disabled()
        await expect(detail.locator('.history li[data-action="referred_fede"]')).to_contain_text(
            "turnada a la FEDE Morelos"
        )
        shown = await _get(service, dispatcher, f"/v1/reports/{votes['id']}")
        assert "Posible compra de votos" in shown["referred_fede"]["note"]
        await expect(detail.locator("[data-role=report-fede] dd")).to_contain_text(
            "Posible compra de votos"
        )

        # -- a report joined to a trip: the trip and the report --------------------------
        detail = await _open(page, joined_report["alert_id"])
        await expect(detail.locator("[data-role=report-text]")).to_have_text(
            "Una camioneta gris nos sigue desde el mitin."
        )
        trip_facts = detail.locator("[data-role=trip-facts]")
        await expect(trip_facts).to_contain_text("Beto Ramírez")
        await expect(trip_facts).to_contain_text("+52 777 555 0101")
        await expect(detail.locator("[data-role=position-now] dd")).not_to_have_text(
            "—", timeout=WAIT_MS
        )
        await expect(page.locator("[data-role=no-location]")).to_have_count(0)

        # -- the SOS: as ever, nothing of a report --------------------------------------
        detail = await _open(page, sos_id)
        await expect(detail.locator("h2")).to_have_text("Botón de pánico (SOS)")
        await expect(detail).to_contain_text("+52 777 555 0101")
        await expect(detail.locator("[data-role=report-text]")).to_have_count(0)
        await expect(detail.get_by_role("button", name="Ver quién reportó")).to_have_count(0)

        # -- a new report while the console is open: by the queue's refresh -------------
        fresh = await _report(
            service,
            julia,
            {"text": "Quemaron propaganda frente a la casa de campaña.", **_at(PALACIO)},
        )
        row = page.locator(f'.queue-item[data-alert-id="{fresh["alert_id"]}"]')
        await expect(row).to_be_visible(timeout=REFRESH_WAIT_MS)
        await expect(row.locator("[data-role=report-line]")).to_contain_text("Otro")
        await expect(page.locator("#new-alert")).to_contain_text(
            "Nueva alerta: Reporte ciudadano (SeguriChat)"
        )

        # The kind filter: reports only.
        await page.get_by_label("Tipo", exact=True).select_option("report")
        await expect(sos_row).to_have_count(0, timeout=WAIT_MS)
        titles = await page.locator(".queue-item .q-title").all_inner_texts()
        assert titles == ["Reporte ciudadano (SeguriChat)"] * 4, titles

        # On a phone the report stacks and nothing is wider than the screen.
        await page.set_viewport_size(PHONE)
        detail = await _open(page, threat["alert_id"])
        # Another alert was opened meanwhile: the file is fetched again when asked for.
        await detail.get_by_role("button", name="Ver foto").click()
        await expect(detail.locator("img[data-role=media-image]")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        assert await page.evaluate("document.body.dataset.pwned === undefined")
        watched.check()
        await watched.context.close()
    finally:
        await phone.close()


def _at(point: tuple[float, float]) -> dict[str, float]:
    return {"lat": point[0], "lon": point[1]}
