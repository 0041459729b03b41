// The watchers' live feed (/v1/live): authenticates with its first frame (the token never
// goes in the URL), subscribes again after every reconnection, and tells the page.

const PING_EVERY_MS = 25_000;
const MAX_BACKOFF_MS = 15_000;
const UNAUTHENTICATED = 4401;

export class LiveFeed {
  /**
   * @param {object} options
   * @param {string} options.token
   * @param {(feed: LiveFeed) => void} options.onReady   subscribe here (after each connect)
   * @param {(frame: object) => void} options.onFrame     every frame after "ready"
   * @param {(state: string) => void} options.onState    "connecting", "live", "reconnecting"
   * @param {(reason: string) => void} options.onAuthLost the token or link stopped working
   */
  constructor({ token, onReady, onFrame, onState = () => {}, onAuthLost = () => {} }) {
    this.token = token;
    this.onReady = onReady;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onAuthLost = onAuthLost;
    this.failures = 0;
    this.stopped = false;
    this.socket = null;
    this.pinger = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000, "bye");
  }

  connect() {
    this.onState(this.failures ? "reconnecting" : "connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/live`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "auth", token: this.token }));
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        this.failures = 0;
        this.onState("live");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
        this.onReady(this);
        return;
      }
      if (frame.type === "pong") return;
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      clearInterval(this.pinger);
      if (this.socket !== socket || this.stopped) return;
      if (event.code === UNAUTHENTICATED) {
        this.stopped = true;
        this.onState("closed");
        this.onAuthLost(event.reason || "");
        return;
      }
      this.failures += 1;
      this.onState("reconnecting");
      const wait = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 5));
      setTimeout(() => {
        if (!this.stopped) this.connect();
      }, wait * (0.75 + Math.random() / 2));
    });
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  subscribeTrips(ids) {
    if (ids.length) this.send({ type: "subscribe", trips: ids });
  }

  subscribeArea(bbox) {
    this.send({ type: "subscribe", bbox });
  }
}

/** Spanish words for the feed's state, for a status line. */
export const FEED_STATE = {
  connecting: "conectando…",
  live: "en vivo",
  reconnecting: "reconectando…",
  closed: "desconectado",
};
