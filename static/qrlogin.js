// qrlogin.js: a dependency-free client for wxlogin ("scan with WeChat to log in").
//
//   import { QRLogin } from "/static/qrlogin.js";
//   const login = QRLogin.start({ base: "", onStatus, onLogin, onExpired });
//
// It creates a scene, waits over EventSource (falling back to polling), exchanges
// the one-time code for a session exactly once, and stops all network activity
// after a terminal status. login.refresh() starts over with a new QR code;
// login.stop() ends everything.

const TERMINAL = new Set(["confirmed", "expired", "denied"]);

export class QRLogin {
  static start(opts) {
    const l = new QRLogin(opts);
    l.refresh();
    return l;
  }

  constructor(opts = {}) {
    this.base = (opts.base || "").replace(/\/$/, "");
    this.onStatus = opts.onStatus || (() => {});
    this.onLogin = opts.onLogin || (() => {});
    this.onExpired = opts.onExpired || (() => {});
    this.onError = opts.onError || (() => {});
    this.onScene = opts.onScene || (() => {});
    this.usePolling = !!opts.polling || typeof EventSource === "undefined";
    this.firstEventTimeout = opts.firstEventTimeout || 5000;
    this.maxStreamErrors = opts.maxStreamErrors || 3;
    this.credentials = opts.credentials || "same-origin";
    this.gen = 0;
  }

  // refresh abandons the current scene (if any) and starts a new one.
  async refresh() {
    this.stop();
    const gen = ++this.gen;
    this.done = false;
    this.exchanged = false;
    let scene;
    try {
      const res = await fetch(this.base + "/api/v1/login/scenes", { method: "POST", credentials: this.credentials });
      if (!res.ok) throw await apiError(res);
      scene = await res.json();
    } catch (err) {
      if (gen === this.gen) this.onError(err);
      return;
    }
    if (gen !== this.gen) return;
    this.scene = scene;
    this.onScene(scene);
    this.handle({ scene_id: scene.scene_id, status: scene.status, expires_at: scene.expires_at, interval: scene.interval }, gen);
    if (this.usePolling) this.poll(gen, 0);
    else this.stream(gen);
  }

  // stop ends every connection and timer.
  stop() {
    this.gen++;
    if (this.es) { this.es.close(); this.es = null; }
    clearTimeout(this.timer);
    clearTimeout(this.firstTimer);
  }

  stream(gen) {
    let errors = 0;
    let gotEvent = false;
    const es = new EventSource(this.base + "/api/v1/login/scenes/" + this.scene.scene_id + "/events",
      { withCredentials: this.credentials === "include" });
    this.es = es;
    const fallback = () => {
      if (gen !== this.gen || this.done) return;
      es.close();
      this.es = null;
      this.poll(gen, 0);
    };
    // A buffering proxy delivers nothing: fall back to polling.
    this.firstTimer = setTimeout(() => { if (!gotEvent) fallback(); }, this.firstEventTimeout);
    const onEvent = (ev) => {
      if (gen !== this.gen) return;
      gotEvent = true;
      errors = 0;
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      this.handle(data, gen);
    };
    for (const s of ["pending", "scanned", "confirmed", "consumed", "expired", "denied"]) es.addEventListener(s, onEvent);
    es.onerror = () => {
      if (gen !== this.gen || this.done) { es.close(); return; }
      if (es.readyState === EventSource.CLOSED || ++errors >= this.maxStreamErrors) fallback();
    };
  }

  async poll(gen, delayMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (gen !== this.gen || this.done) return;
      let next = (this.scene.interval || 2) * 1000;
      try {
        const res = await fetch(this.base + "/api/v1/login/scenes/" + this.scene.scene_id + "?wait=25", {
          credentials: this.credentials,
          headers: { Authorization: "Bearer " + this.scene.secret },
        });
        if (gen !== this.gen) return;
        if (res.status === 429) {
          next = Math.max(next, (parseInt(res.headers.get("Retry-After"), 10) || 2) * 1000);
        } else if (res.status === 404) {
          this.handle({ scene_id: this.scene.scene_id, status: "expired" }, gen);
        } else if (!res.ok) {
          this.onError(await apiError(res));
        } else {
          this.handle(await res.json(), gen);
        }
      } catch (err) {
        if (gen === this.gen) this.onError(err);
      }
      if (gen === this.gen && !this.done) this.poll(gen, next);
    }, delayMs);
  }

  handle(data, gen) {
    if (gen !== this.gen || this.done) return;
    this.onStatus(data.status, data);
    if (!TERMINAL.has(data.status)) return;
    this.done = true;
    this.stop();
    this.gen = gen; // keep this scene's exchange alive
    if (data.status === "confirmed") this.exchange(data, gen);
    else if (data.status === "expired") this.onExpired(data);
  }

  async exchange(data, gen) {
    if (this.exchanged || !data.code) return;
    this.exchanged = true;
    try {
      const res = await fetch(this.base + "/api/v1/login/token", {
        method: "POST",
        credentials: this.credentials,
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + this.scene.secret },
        body: JSON.stringify({ scene_id: data.scene_id, code: data.code }),
      });
      if (!res.ok) throw await apiError(res);
      const session = await res.json();
      if (gen === this.gen) this.onLogin(session);
    } catch (err) {
      if (gen === this.gen) this.onError(err);
    }
  }
}

async function apiError(res) {
  let body = {};
  try { body = await res.json(); } catch {}
  const err = new Error(body.message || res.statusText || "request failed");
  err.status = res.status;
  err.code = body.error;
  return err;
}

if (typeof window !== "undefined") window.QRLogin = QRLogin;
