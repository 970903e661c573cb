// The demo page: a QR code and/or a login code to send to the account (whichever
// methods the server has on), a countdown, live status in Chinese and English, and in
// demo mode buttons that have the server simulate WeChat's signed callback: a scan, or
// the person's message carrying the code. Inside WeChat's browser (and with the oauth
// method on) one "Log in with WeChat" button stands in for the QR code.
// Everything goes through qrlogin.js, as it would on another site.
import { QRLogin } from "./qrlogin.js";

const $ = (id) => document.getElementById(id);
// wxlogin may sit under a path prefix behind a reverse proxy: the API is beside this page,
// unless the page says where it is (the OpenID Connect login page, data-base).
const page = document.body.dataset;
const base = page.base ?? new URL(".", location.href).href.replace(/\/$/, "");
// The OpenID Connect login page goes on to data-continue once logged in.
const next = page.continue || "";

// Each message is [中文, English].
const messages = {
  pending: ["请用微信扫一扫登录", "Scan the code with WeChat to log in"],
  scanned: ["已扫码, 请在手机上确认登录", "Scanned: confirm the login on your phone"],
  confirmed: ["已确认, 正在登录…", "Confirmed, logging in…"],
  expired: ["二维码已过期, 请刷新", "The QR code has expired: refresh it"],
  denied: ["已在手机上拒绝登录", "The login was denied on the phone"],
  consumed: ["此二维码已被使用", "This QR code was already used"],
};

const oauthPending = ["点击下面的按钮, 用微信登录", "Tap the button to log in with WeChat"];

let login;
let scene;
let tick;
let demo = false;

function say(zh, en, tone = "") {
  const el = $("status");
  el.replaceChildren(zh, Object.assign(document.createElement("span"), { className: "en", textContent: en }));
  el.className = "status " + tone;
}

function setStatus(status) {
  document.body.dataset.status = status;
}

// ordinal gives "1st", "2nd", "3rd", "11th", "22nd".
function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

function overlay(mark, tone, withRefresh) {
  $("overlay").hidden = !mark;
  $("overlay").className = "overlay " + (tone || "");
  $("overlay-mark").textContent = mark || "";
  $("overlay-refresh").hidden = !withRefresh;
}

function startCountdown(expiresAtMs, total) {
  clearInterval(tick);
  $("timer").hidden = false;
  const draw = () => {
    const left = Math.max(0, Math.ceil((expiresAtMs - Date.now()) / 1000));
    $("countdown").textContent = `${left} 秒后过期 · expires in ${left} s`;
    $("bar").style.transform = `scaleX(${total > 0 ? Math.min(1, left / total) : 0})`;
    if (left === 0) clearInterval(tick);
  };
  draw();
  tick = setInterval(draw, 500);
}

function stopCountdown() {
  clearInterval(tick);
  $("timer").hidden = true;
}

const handlers = {
  onScene(s) {
    scene = s;
    document.body.dataset.method = s.oauth ? "oauth" : "qr";
    $("qr-box").hidden = s.oauth;
    $("wechat-login").hidden = !s.oauth;
    $("wechat-login").disabled = false;
    $("wechat-login").dataset.scene = s.scene_id;
    showBanner();
    $("qr").dataset.scene = s.scene_id;
    showMethods(s);
    $("user").hidden = true;
    $("net").hidden = true;
    overlay(null);
    startCountdown(s.expiresAtMs, s.ttl);
    $("scan").disabled = false;
  },
  onStatus(status) {
    setStatus(status);
    $("net").hidden = true;
    const [zh, en] = (status === "pending" && scene && scene.oauth ? oauthPending : messages[status]) || [status, status];
    const waiting = status === "pending" || status === "scanned";
    say(zh, en, waiting ? "" : status === "confirmed" ? "ok" : "bad");
    if (status === "scanned") overlay("✓", "ok");
    if (!waiting) {
      stopCountdown();
      $("scan").disabled = true;
      $("send-code").disabled = true;
      $("code-box").classList.add("faded");
      $("wechat-login").hidden = true;
      overlay(status === "confirmed" ? "✓" : "!", status === "confirmed" ? "ok" : "bad", status !== "confirmed");
    }
  },
  onLogin(session) {
    const u = session.user;
    if (next) location.replace(next);
    setStatus("logged-in");
    say(`${u.name}, 登录成功! 这是你第 ${u.login_count} 次登录`,
      `Logged in as ${u.name}, for the ${ordinal(u.login_count)} time`, "ok");
    $("user-name").textContent = u.name;
    $("user-count").textContent = String(u.login_count);
    $("user-first").textContent = new Date(u.first_login_at).toLocaleString();
    $("user").hidden = false;
  },
  onExpired() {
    $("qr").classList.add("faded");
  },
  onMode(mode) {
    document.body.dataset.mode = mode;
    $("mode").textContent = mode === "stream" ? "实时推送 · live stream (SSE)" : "轮询 · polling";
    $("polling").checked = mode === "polling";
  },
  onError(err) {
    if (err.retrying) {
      $("net").hidden = false;
      $("net").textContent = "网络不稳定, 正在重试… · Connection problem, retrying…";
      return;
    }
    setStatus("error");
    stopCountdown();
    say("出错了: " + err.message, "Something went wrong: " + err.message, "bad");
  },
};

// showMethods shows the QR, the login code, or both side by side.
function showMethods(s) {
  const code = s.methods.includes("code") && !!s.login_code;
  document.body.dataset.methods = s.methods.join(" ");
  $("code-box").hidden = !code;
  $("code-box").classList.remove("faded");
  $("send-code").disabled = false;
  $("scan").hidden = !demo || !s.methods.includes("qr") || !!s.oauth;
  $("send-code").hidden = !demo || !code;
  if (!code) return;
  $("login-code").textContent = s.login_code;
  const account = s.account_name || "本网站的微信公众号";
  const accountEn = s.account_name || "this site's WeChat Official Account";
  const or = s.methods.includes("qr") ? ["或者", "Or "] : ["", ""];
  const how = $("code-how");
  how.replaceChildren(`${or[0]}关注并发送以下登录码给公众号「${account}」`,
    Object.assign(document.createElement("span"), {
      className: "en",
      textContent: `${or[1]}${or[1] ? "send" : "Send"} this code to ${accountEn} in WeChat (follow it first)`,
    }));
  $("follow-qr").hidden = !s.follow_qr;
  if (s.follow_qr) $("follow-qr").src = s.follow_qr;
}

async function simulateSendCode() {
  if (!scene) return;
  $("send-code").disabled = true;
  try {
    const res = await fetch(base + "/api/v1/dev/code", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + scene.secret },
      body: JSON.stringify({ scene_id: scene.scene_id, code: scene.login_code }),
    });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).message || res.statusText);
  } catch (err) {
    $("send-code").disabled = false;
    say("模拟发送登录码失败: " + err.message, "Simulated code message failed: " + err.message, "bad");
  }
}

async function simulateScan() {
  if (!scene) return;
  $("scan").disabled = true;
  try {
    const res = await fetch(base + "/api/v1/dev/scan", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + scene.secret },
      body: JSON.stringify({ scene_id: scene.scene_id }),
    });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).message || res.statusText);
  } catch (err) {
    $("scan").disabled = false;
    say("模拟扫码失败: " + err.message, "Simulated scan failed: " + err.message, "bad");
  }
}

function refresh() {
  $("qr").classList.remove("faded");
  $("qr").removeAttribute("data-scene");
  say("正在准备二维码…", "Preparing the QR code…");
  setStatus("loading");
  login.refresh();
}

async function demoMode() {
  try {
    const res = await fetch(base + "/api/v1/dev/config");
    return res.ok && (await res.json()).demo === true;
  } catch {
    return false;
  }
}

// showBanner says which demo this is: a simulated scan, or (inside WeChat) a
// simulated authorisation page.
function showBanner() {
  const oauth = !!(scene && scene.oauth);
  $("demo-banner").hidden = !demo || oauth;
  $("demo-banner-oauth").hidden = !demo || !oauth;
  $("scan").hidden = !demo || oauth;
}

function loginWithWeChat() {
  $("wechat-login").disabled = true;
  say("正在前往微信授权…", "Going to WeChat's authorisation…");
  if (!login.loginWithWeChat()) $("wechat-login").disabled = false;
}

async function init() {
  $("refresh").addEventListener("click", refresh);
  $("overlay-refresh").addEventListener("click", refresh);
  $("scan").addEventListener("click", simulateScan);
  $("send-code").addEventListener("click", simulateSendCode);
  $("wechat-login").addEventListener("click", loginWithWeChat);
  $("polling").addEventListener("change", () => login.setPolling($("polling").checked));
  login = QRLogin.start({ base, qr: $("qr"), resume: page.resume !== "0", polling: $("polling").checked, ...handlers });
  demo = await demoMode();
  showBanner();
  if ($("oidc-demo")) $("oidc-demo").hidden = !demo;
  if (scene) showMethods(scene);
}

init();
