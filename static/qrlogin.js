// qrlogin.js — a dependency-free browser client for wxlogin ("scan with WeChat to log in").
//
//   import { QRLogin } from "https://login.example.com/static/qrlogin.js";
//   const login = QRLogin.start({
//     base: "https://login.example.com",  // where wxlogin runs; "" = this page's origin
//     qr: document.querySelector("#qr"),  // an <img> to show the QR code in (optional)
//     onStatus(status, view) {},          // pending, scanned, confirmed, expired, denied, consumed
//     onLogin(session) {},                // {access_token, token_type, expires_in, user}
//     onExpired(view) {},                 // call login.refresh() for a new QR code
//   });
//
// It creates a scene, shows its QR code and waits for the scan over EventSource. It falls
// back to polling (long-polls, honouring the server's `interval`, `slow_down` and
// `Retry-After`) when EventSource is missing, when the stream fails repeatedly, or when no
// first event arrives within a few seconds (a proxy that buffers the stream). It exchanges
// the one-time code for a session exactly once, and after a terminal status it makes no
// more requests. login.refresh() starts over with a new QR code, login.setPolling(on)
// switches how the current scene is watched, login.stop() ends everything.
//
// Login methods: the server says which are on in scene.methods. With "qr" the scene has a
// QR code (qr_image, shown in opts.qr). With "code" it has scene.login_code, a short code
// of digits the person sends to the Official Account as a WeChat message (on this phone
// too: they switch to WeChat and back), with scene.account_name and scene.follow_qr (an
// image of the account's follow QR, when configured) to show beside it. Both may be on.
//
// Other callbacks: onScene(scene) when a QR code is ready, onMode("stream"|"polling"),
// onError(err) — err.retrying is true when the client keeps trying on its own.
//
// Inside WeChat's own browser (MicroMessenger in the user agent) a person cannot scan
// their own screen: when wxlogin offers the oauth method, scene.oauth is true, no QR
// code is loaded, and the page shows one button that calls login.loginWithWeChat().
// The tab goes to WeChat's authorisation and comes back to this page, where the client
// picks the scene up again and finishes the login by itself (onLogin). The page must be
// on wxlogin's site (same origin or a subdomain: the scene's cookie is SameSite=Strict);
// an absolute return address must be in WXLOGIN_ALLOWED_ORIGINS. Option: inWeChat
// (true/false overrides the user-agent test).
// Options: polling (start with polling), resume (keep the scene across page reloads of
// this tab, in sessionStorage), firstEventTimeout (ms, 5000), maxStreamErrors (3),
// wait (long-poll seconds, 25; 0 = plain polling), credentials ("include" when base is
// another origin; wxlogin must then list this page's origin in WXLOGIN_ALLOWED_ORIGINS).

const STATUSES = ["pending", "scanned", "confirmed", "consumed", "expired", "denied"];
const TERMINAL = new Set(["confirmed", "consumed", "expired", "denied"]);
// The server publishes "expired" at expires_at; this much later the client stops
// waiting on its own (say, the network is down), so nothing runs forever.
const EXPIRY_GRACE_MS = 3000;
const MAX_BACKOFF_MS = 30000;
// A confirmed scene's one-time code lives this long (the server's rule).
const CODE_TTL_MS = 5 * 60 * 1000;
const noop = () => {};

export class QRLogin {
  // start makes a client and shows the first QR code (or the tab's saved one with resume).
  static start(opts) {
    const login = new QRLogin(opts);
    // Back from WeChat's authorisation: finish the scene this tab left with.
    const back = login.load(login.oauthKey, true);
    login.begin(back || (login.resume ? login.load(login.storageKey) : null));
    return login;
  }

  constructor(opts = {}) {
    this.base = (opts.base || "").replace(/\/+$/, "");
    this.qr = opts.qr || null;
    this.onScene = opts.onScene || noop;
    this.onStatus = opts.onStatus || noop;
    this.onLogin = opts.onLogin || noop;
    this.onExpired = opts.onExpired || noop;
    this.onError = opts.onError || noop;
    this.onMode = opts.onMode || noop;
    this.polling = !!opts.polling;
    this.resume = !!opts.resume;
    this.firstEventTimeout = opts.firstEventTimeout ?? 5000;
    this.maxStreamErrors = opts.maxStreamErrors ?? 3;
    this.wait = opts.wait ?? 25;
    this.credentials = opts.credentials || (sameOrigin(this.base) ? "same-origin" : "include");
    this.inWeChat = opts.inWeChat ?? /MicroMessenger/i.test(navigator.userAgent);
    this.storageKey = "qrlogin:" + (this.base || location.origin);
    this.oauthKey = "qrlogin:oauth:" + (this.base || location.origin);
    this.run = null; // the current scene: everything asynchronous checks it is still current
    this.scene = null;
    this.status = null;
    this.mode = null;
  }

  // refresh abandons the current scene and starts over with a new QR code.
  refresh() {
    return this.begin(null);
  }

  // stop ends every request, stream and timer of the current scene.
  stop() {
    const run = this.run;
    this.run = null;
    if (run) {
      this.finish(run);
      if (run.exchange) run.exchange.abort();
    }
  }

  // setPolling switches between the stream and polling for the current scene,
  // without a new QR code.
  setPolling(on) {
    this.polling = !!on;
    if (this.live(this.run) && this.run.scene) this.watch(this.run);
  }

  async begin(saved) {
    this.stop();
    const run = { scene: null, done: false, exchanged: false, resumed: !!saved, waiter: null, expiry: 0, exchange: null };
    this.run = run;
    this.status = null;
    let scene = saved;
    if (!scene) {
      try {
        scene = await this.createScene();
      } catch (err) {
        if (run === this.run) {
          run.done = true;
          this.onError(err);
        }
        return;
      }
      if (run !== this.run) return;
      this.save(scene);
    }
    run.scene = this.scene = scene;
    if (this.qr && scene.methods.includes("qr") && !scene.oauth) this.qr.src = scene.qr_image;
    this.onScene(scene);
    run.expiry = setTimeout(() => this.handle(run, { scene_id: scene.scene_id, status: "expired", expires_at: scene.expires_at }),
      Math.max(0, scene.expiresAtMs - Date.now()) + EXPIRY_GRACE_MS);
    if (!saved) this.handle(run, { scene_id: scene.scene_id, status: scene.status, expires_at: scene.expires_at, interval: scene.interval });
    this.watch(run);
  }

  async createScene() {
    const res = await fetch(this.base + "/api/v1/login/scenes", {
      method: "POST",
      credentials: this.credentials,
      headers: { Accept: "application/json" },
    });
    if (!res.ok) throw await apiError(res);
    const s = await res.json();
    return {
      ...s,
      qr_image: this.resolve(s.qr_image),
      methods: s.methods || ["qr"],
      follow_qr: this.resolve(s.follow_qr || ""),
      events_url: this.resolve(s.events_url),
      status_url: this.resolve(s.status_url),
      oauth_url: s.oauth_url ? this.resolve(s.oauth_url) : "",
      // Inside WeChat, with the oauth method on: a button instead of the QR code.
      oauth: !!s.oauth_url && this.inWeChat,
      ttl: s.expires_in,
      // From this tab's clock, so a skewed clock does not shorten the countdown.
      expiresAtMs: Date.now() + s.expires_in * 1000,
    };
  }

  // watch (re)starts waiting for the current scene with the chosen transport.
  watch(run) {
    this.unwatch(run);
    const waiter = { ctrl: new AbortController(), timers: new Set(), es: null };
    run.waiter = waiter;
    if (this.polling || typeof EventSource === "undefined") this.poll(run, waiter, 0);
    else this.stream(run, waiter);
  }

  unwatch(run) {
    const w = run.waiter;
    if (!w) return;
    run.waiter = null;
    if (w.es) w.es.close();
    for (const t of w.timers) clearTimeout(t);
    w.ctrl.abort();
  }

  live(run, waiter) {
    return !!run && run === this.run && !run.done && (!waiter || run.waiter === waiter);
  }

  later(run, waiter, ms, fn) {
    const t = setTimeout(() => {
      waiter.timers.delete(t);
      if (this.live(run, waiter)) fn();
    }, ms);
    waiter.timers.add(t);
  }

  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.onMode(mode);
  }

  stream(run, waiter) {
    this.setMode("stream");
    // The scene's cookie (set when it was created) authorises the stream: the secret
    // never goes into a URL.
    const es = new EventSource(run.scene.events_url, { withCredentials: this.credentials === "include" });
    waiter.es = es;
    let errors = 0;
    let gotEvent = false;
    const fallback = () => {
      if (!this.live(run, waiter)) return;
      es.close();
      this.watchByPolling(run);
    };
    // A buffering proxy holds the events back: give up on the stream.
    this.later(run, waiter, this.firstEventTimeout, () => {
      if (!gotEvent) fallback();
    });
    const onEvent = (ev) => {
      if (!this.live(run, waiter)) return;
      gotEvent = true;
      errors = 0;
      let view;
      try {
        view = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(run, view);
    };
    for (const s of STATUSES) es.addEventListener(s, onEvent);
    es.onerror = () => {
      if (!this.live(run, waiter)) {
        es.close();
        return;
      }
      // CLOSED: the server refused the stream (an error status, or 204 for a finished
      // scene); polling gets a clear answer. CONNECTING: EventSource retries by itself.
      if (es.readyState === EventSource.CLOSED || ++errors >= this.maxStreamErrors) fallback();
    };
  }

  // watchByPolling is the fallback from the stream; the choice holds for this scene.
  watchByPolling(run) {
    this.unwatch(run);
    const waiter = { ctrl: new AbortController(), timers: new Set(), es: null };
    run.waiter = waiter;
    this.poll(run, waiter, 0);
  }

  poll(run, waiter, delayMs) {
    this.setMode("polling");
    this.later(run, waiter, delayMs, () => this.pollOnce(run, waiter));
  }

  async pollOnce(run, waiter) {
    const scene = run.scene;
    let next = scene.interval * 1000; // counted from the end of this request
    try {
      const res = await fetch(scene.status_url + (this.wait > 0 ? "?wait=" + this.wait : ""), {
        credentials: this.credentials,
        cache: "no-store",
        signal: waiter.ctrl.signal,
        headers: { Accept: "application/json", Authorization: "Bearer " + scene.secret },
      });
      if (!this.live(run, waiter)) return;
      if (res.ok) {
        const view = await res.json();
        waiter.failures = 0;
        if (view.interval > 0) next = view.interval * 1000;
        this.handle(run, view);
      } else if (res.status === 404) {
        // Unknown or long finished: nothing more will happen to this scene.
        this.handle(run, { scene_id: scene.scene_id, status: "expired", expires_at: scene.expires_at });
      } else if (res.status === 429 || res.status >= 500) {
        const err = await apiError(res);
        if (err.code !== "slow_down") {
          waiter.failures = (waiter.failures || 0) + 1;
          next = backoff(next, waiter.failures);
          err.retrying = true;
          this.onError(err);
        }
        next = Math.max(next, retryAfterMs(res));
      } else {
        // 400/401/403: retrying cannot help.
        const err = await apiError(res);
        this.finish(run);
        this.onError(err);
        return;
      }
    } catch (err) {
      if (!this.live(run, waiter) || err.name === "AbortError") return;
      waiter.failures = (waiter.failures || 0) + 1;
      next = backoff(next, waiter.failures);
      err.retrying = true;
      this.onError(err);
    }
    if (this.live(run, waiter)) this.poll(run, waiter, next);
  }

  // handle takes a status from the stream, a poll or the client's own expiry timer.
  handle(run, view) {
    if (!this.live(run)) return;
    if (view.interval > 0) run.scene.interval = view.interval;
    if (run.resumed && this.status === null && view.status !== "confirmed" && TERMINAL.has(view.status)) {
      // The saved scene ended while the page was away (this tab logged in with it
      // before a reload, it expired, or the server forgot it): show a new QR code.
      this.forget();
      this.refresh();
      return;
    }
    if (view.status === this.status) return;
    this.status = view.status;
    if (TERMINAL.has(view.status)) {
      this.finish(run);
      this.forget();
    }
    this.onStatus(view.status, view);
    if (view.status === "confirmed") this.exchange(run, view);
    else if (view.status === "expired") this.onExpired(view);
  }

  // finish stops all waiting for the scene: no request, stream or timer is left.
  finish(run) {
    run.done = true;
    clearTimeout(run.expiry);
    this.unwatch(run);
  }

  // exchange trades the one-time code for a session, at most once per scene.
  async exchange(run, view) {
    if (run.exchanged) return;
    run.exchanged = true;
    if (!view.code) {
      this.onError(new Error("confirmed without a code: the scene's secret was not sent"));
      return;
    }
    run.exchange = new AbortController();
    try {
      const res = await fetch(this.base + "/api/v1/login/token", {
        method: "POST",
        credentials: this.credentials,
        signal: run.exchange.signal,
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + run.scene.secret },
        body: JSON.stringify({ scene_id: view.scene_id, code: view.code }),
      });
      if (!res.ok) throw await apiError(res);
      const session = await res.json();
      if (run === this.run) this.onLogin(session);
    } catch (err) {
      if (run === this.run && err.name !== "AbortError") this.onError(err);
    }
  }

  // loginWithWeChat sends this tab to WeChat's authorisation for the current scene
  // (only when scene.oauth). The scene is kept for this tab, so the page it returns to
  // finishes the login; returnTo defaults to this page.
  loginWithWeChat(returnTo) {
    const scene = this.run && this.run.scene;
    if (!scene || !scene.oauth_url || !this.live(this.run)) return false;
    try {
      sessionStorage.setItem(this.oauthKey, JSON.stringify(scene));
    } catch {}
    const target = new URL(returnTo || location.href, location.href);
    const base = new URL(scene.oauth_url, location.href);
    // A path when this page is on wxlogin's origin; else the full address (an allowed origin).
    const back = target.origin === base.origin ? target.pathname + target.search + target.hash : target.href;
    this.stop();
    location.assign(scene.oauth_url + "?return_to=" + encodeURIComponent(back));
    return true;
  }

  // resolve makes a URL from the server usable from this page: a path is on base.
  resolve(u) {
    return u && u.startsWith("/") ? this.base + u : u;
  }

  // save keeps the scene for a reload of this tab (sessionStorage is per tab, so two
  // tabs never share a scene). Storage may be unavailable (private modes): then a
  // reload simply shows a new QR code.
  save(scene) {
    if (!this.resume) return;
    try {
      sessionStorage.setItem(this.storageKey, JSON.stringify(scene));
    } catch {}
  }

  // load returns a scene kept for this tab under key, if it is still alive (once
  // removes it: a scene that went to WeChat's authorisation is picked up once).
  load(key, once) {
    try {
      const scene = JSON.parse(sessionStorage.getItem(key) || "null");
      if (once) sessionStorage.removeItem(key);
      // Back from WeChat the scene may be confirmed, and its code outlives the QR code by
      // 5 minutes: ask the server. Otherwise only a scene with time left is worth showing.
      const left = scene ? scene.expiresAtMs - Date.now() : 0;
      if (scene && scene.scene_id && scene.secret && (once ? left > -CODE_TTL_MS : left > 2000)) {
        scene.expires_in = Math.max(0, Math.round(left / 1000));
        scene.resumed = true;
        return scene;
      }
    } catch {}
    return null;
  }

  forget() {
    if (!this.resume) return;
    try {
      sessionStorage.removeItem(this.storageKey);
    } catch {}
  }
}

function sameOrigin(base) {
  return !base || new URL(base, location.href).origin === location.origin;
}

function backoff(ms, failures) {
  return Math.min(MAX_BACKOFF_MS, ms * 2 ** Math.min(failures, 5));
}

// retryAfterMs reads Retry-After in seconds or as an HTTP date; 0 when absent.
function retryAfterMs(res) {
  const v = res.headers.get("Retry-After");
  if (!v) return 0;
  const secs = Number(v);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
}

async function apiError(res) {
  let body = {};
  try {
    body = await res.json();
  } catch {}
  const err = new Error(body.message || res.statusText || "request failed (" + res.status + ")");
  err.status = res.status;
  err.code = body.error;
  return err;
}

if (typeof window !== "undefined") window.QRLogin = QRLogin;
