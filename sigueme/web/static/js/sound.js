// The alert sound: a short two-tone beep made with the Web Audio API (no file to load).
// Browsers keep audio silent until the viewer has interacted with the page; the toggle
// button is that interaction, and says whether sound is on.

let context = null;

function audio() {
  if (!context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    context = new Context();
  }
  return context;
}

/** Whether a beep would be heard now. */
export function soundOn() {
  return Boolean(context && context.state === "running");
}

/** Try to switch the sound on (needs a user gesture in most browsers). */
export async function enableSound() {
  const ctx = audio();
  if (!ctx) return false;
  try {
    await ctx.resume();
  } catch {
    return false;
  }
  return ctx.state === "running";
}

/** The alert sound, ``times`` times; each alert sounded is counted on the body
 * (``data-alert-sounds``), which says so to tests and to assistive tools. */
export function beep(times = 2) {
  document.body.dataset.alertSounds = String(Number(document.body.dataset.alertSounds || 0) + 1);
  tone(times);
}

function tone(times) {
  const ctx = audio();
  if (!ctx) return;
  if (ctx.state !== "running") ctx.resume().catch(() => {});
  let at = ctx.currentTime + 0.02;
  for (let i = 0; i < times; i += 1) {
    for (const frequency of [880, 660]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at);
      osc.stop(at + 0.2);
      at += 0.22;
    }
    at += 0.15;
  }
}

/** Wire a toggle button: it shows whether sound is on and switches it on when pressed. */
export function soundButton(button) {
  const show = () => {
    const on = soundOn();
    button.textContent = on ? "Sonido activado" : "Activar sonido";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.classList.toggle("is-on", on);
  };
  button.addEventListener("click", async () => {
    await enableSound();
    show();
    if (soundOn()) tone(1);
  });
  // Any first interaction with the page is enough for the browser.
  const once = async () => {
    await enableSound();
    show();
  };
  document.addEventListener("pointerdown", once, { once: true });
  document.addEventListener("keydown", once, { once: true });
  enableSound().then(show);
  show();
}
