// Leaflet, served by this service (window.L from /static/vendor/leaflet/leaflet.js), and
// how a trip is drawn: corridor, planned route, track so far, destination, the live
// position with its accuracy circle, and where an alert was raised.
//
// The base map is optional: without tiles (none configured, or offline) everything
// still draws on the map's plain background.

import { el } from "./format.js";

export const MORELOS = [18.75, -99.1];
export const STATUS_COLOR = {
  pending: "#6b7785",
  on_route: "#1e7b4f",
  drifting: "#b7791f",
  off_route: "#b3261e",
  stopped: "#c05621",
  late: "#b7791f",
  arrived: "#2b5f9e",
  signal_lost: "#6b4e9e",
};
export const SEVERITY_COLOR = { 1: "#4a6fa5", 2: "#b7791f", 3: "#c05621", 4: "#b3261e" };

function meta(name) {
  const node = document.querySelector(`meta[name="${name}"]`);
  return node ? node.getAttribute("content") || "" : "";
}

/** Whether Leaflet loaded; when not, ``container`` says why (the operator must install it). */
export function leafletReady(container) {
  if (window.L) return true;
  container.replaceChildren(
    el(
      "div",
      { className: "map-missing", role: "alert" },
      el("strong", { text: "El mapa no está disponible." }),
      el("p", {
        text:
          "Falta la biblioteca de mapas (Leaflet) en el servidor. Quien opera Sígueme debe " +
          "ejecutar scripts/setup.sh. Los datos de la lista siguen actualizándose.",
      }),
    ),
  );
  return false;
}

/** A map in ``container``, on the configured tiles (if any), over Morelos. */
export function createMap(container, { zoom = 10 } = {}) {
  const L = window.L;
  const map = L.map(container, { zoomControl: true, worldCopyJump: false }).setView(
    MORELOS,
    zoom,
  );
  map.attributionControl.setPrefix("Leaflet");
  const url = meta("sigueme-tile-url");
  if (url) {
    const attribution = document.createElement("span");
    attribution.textContent = meta("sigueme-tile-attribution");
    L.tileLayer(url, {
      maxZoom: 19,
      // innerHTML of the attribution control: the text escaped by the DOM.
      attribution: attribution.innerHTML,
      // Tile servers may ask who shows their tiles: the origin only, never a path
      // (a share link's path is its token).
      referrerPolicy: "strict-origin",
    }).addTo(map);
  } else {
    container.classList.add("no-tiles");
  }
  L.control.scale({ imperial: false }).addTo(map);
  return map;
}

function latLngs(coordinates) {
  return coordinates.map(([lon, lat]) => [lat, lon]);
}

function polygonLatLngs(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates.map(latLngs);
  if (geometry.type === "MultiPolygon") return geometry.coordinates.map((p) => p.map(latLngs));
  return [];
}

/** Everything drawn for one trip; update it as the feed says. */
export class TripLayer {
  constructor(map, tripId, { label = "" } = {}) {
    const L = window.L;
    this.map = map;
    this.tripId = tripId;
    this.label = label;
    this.group = L.featureGroup().addTo(map);
    this.corridor = L.polygon([], {
      color: "#2b5f9e",
      weight: 1,
      dashArray: "4 4",
      fillColor: "#2b5f9e",
      fillOpacity: 0.1,
      interactive: false,
    }).addTo(this.group);
    this.route = L.polyline([], { color: "#1d4f8a", weight: 4, opacity: 0.85 }).addTo(this.group);
    this.track = L.polyline([], { color: "#2f3b4a", weight: 3, opacity: 0.9 }).addTo(this.group);
    this.destination = null;
    this.origin = null;
    this.accuracy = null;
    this.position = null;
    this.alertMarkers = new Map();
    this.trackT = "";
  }

  setLabel(label) {
    this.label = label;
    if (this.position) this.position.setTooltipContent(this.tooltip());
  }

  tooltip() {
    return el("span", { className: "map-tooltip", text: this.label || "Viaje" });
  }

  setRoute(geometry) {
    if (!geometry || !geometry.coordinates || geometry.coordinates.length < 2) return;
    const L = window.L;
    const points = latLngs(geometry.coordinates);
    this.route.setLatLngs(points);
    const start = points[0];
    const end = points[points.length - 1];
    if (!this.origin) {
      this.origin = L.circleMarker(start, {
        radius: 5,
        color: "#1d4f8a",
        weight: 2,
        fillColor: "#ffffff",
        fillOpacity: 1,
      })
        .bindTooltip(el("span", { text: "Salida" }))
        .addTo(this.group);
    }
    if (!this.destination) {
      this.destination = L.marker(end, {
        icon: L.divIcon({ className: "map-flag", iconSize: [16, 28], iconAnchor: [2, 28] }),
        keyboard: false,
        title: "Destino",
        alt: "Destino",
      })
        .bindTooltip(el("span", { text: "Destino" }))
        .addTo(this.group);
    }
  }

  setCorridor(geometry) {
    this.corridor.setLatLngs(polygonLatLngs(geometry));
  }

  /** The track so far, from ``[lon, lat]`` pairs in time order. */
  setTrack(coordinates) {
    this.track.setLatLngs(latLngs(coordinates));
  }

  extendTrack(lon, lat) {
    this.track.addLatLng([lat, lon]);
  }

  /** The live position, its accuracy circle, coloured by the route status. */
  setPosition(lon, lat, accuracy, status) {
    const L = window.L;
    const color = STATUS_COLOR[status] || STATUS_COLOR.pending;
    const at = [lat, lon];
    if (!this.position) {
      this.accuracy = L.circle(at, {
        radius: accuracy || 0,
        color,
        weight: 1,
        fillOpacity: 0.12,
        interactive: false,
      }).addTo(this.group);
      this.position = L.circleMarker(at, {
        radius: 9,
        color: "#ffffff",
        weight: 3,
        fillColor: color,
        fillOpacity: 1,
      })
        .bindTooltip(this.tooltip(), { permanent: true, direction: "right", offset: [10, 0] })
        .addTo(this.group);
    } else {
      this.position.setLatLng(at);
      this.position.setStyle({ fillColor: color });
      this.accuracy.setLatLng(at);
      this.accuracy.setRadius(accuracy || 0);
      this.accuracy.setStyle({ color });
    }
    this.position.getElement()?.setAttribute("aria-label", `Posición actual: ${this.label}`);
  }

  /** Colour the position by the status shown (it may change without a new fix). */
  setStatus(status) {
    const color = STATUS_COLOR[status] || STATUS_COLOR.pending;
    if (this.position) this.position.setStyle({ fillColor: color });
    if (this.accuracy) this.accuracy.setStyle({ color });
  }

  /** Where an alert was raised (a ringed marker). */
  setAlert(alertId, lon, lat, severity, text) {
    const L = window.L;
    const color = SEVERITY_COLOR[severity] || SEVERITY_COLOR[3];
    const previous = this.alertMarkers.get(alertId);
    if (previous) previous.remove();
    const marker = L.circleMarker([lat, lon], {
      radius: 13,
      color,
      weight: 3,
      fillColor: color,
      fillOpacity: 0.18,
    })
      .bindTooltip(el("span", { text }))
      .addTo(this.group);
    this.alertMarkers.set(alertId, marker);
  }

  bounds() {
    const bounds = this.group.getBounds();
    return bounds.isValid() ? bounds : null;
  }

  /** Fit the map to the trip; animated when the viewer asked for it. */
  focus(maxZoom = 16, animate = false) {
    const bounds = this.bounds();
    if (bounds) this.map.fitBounds(bounds, { padding: [30, 30], maxZoom, animate });
  }

  remove() {
    this.group.remove();
  }
}

/** Fit the map to several layers' bounds. */
export function fitAll(map, layers, maxZoom = 15) {
  const L = window.L;
  let bounds = null;
  for (const layer of layers) {
    const b = layer.bounds();
    if (b) bounds = bounds ? bounds.extend(b) : L.latLngBounds(b.getSouthWest(), b.getNorthEast());
  }
  if (bounds) map.fitBounds(bounds, { padding: [30, 30], maxZoom, animate: false });
}

