import { QRLogin } from "/static/qrlogin.js";

const $ = (id) => document.getElementById(id);
let login, scene, expiresAt, tick;

const text = {
  pending: "请用微信扫码 · Scan with WeChat",
  scanned: "已扫码, 请在手机上确认 · Scanned: confirm on your phone",
  expired: "二维码已过期, 请刷新 · Expired: get a new QR code",
  denied: "已拒绝 · Login denied",
};

function show(msg, cls) {
  $("status").textContent = msg;
  $("status").className = "status " + (cls || "");
}

function countdown() {
  clearInterval(tick);
  tick = setInterval(() => {
    const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    $("countdown").textContent = left > 0 ? `${left} 秒后过期 · expires in ${left}s` : "";
  }, 250);
}

function start() {
  if (login) login.stop();
  $("qr").classList.remove("faded");
  login = QRLogin.start({
    polling: $("polling").checked,
    onScene(s) {
      scene = s;
      expiresAt = Date.parse(s.expires_at);
      $("qr").src = s.qr_image;
      $("qr").dataset.scene = s.scene_id;
      countdown();
    },
    onStatus(status) {
      document.body.dataset.status = status;
      if (text[status]) show(text[status], status === "pending" || status === "scanned" ? "" : "bad");
      if (status !== "pending" && status !== "scanned") { clearInterval(tick); $("countdown").textContent = ""; $("qr").classList.add("faded"); }
    },
    onLogin(session) {
      const u = session.user;
      document.body.dataset.status = "logged-in";
      show(`${u.name} 已登录, 第 ${u.login_count} 次登录 · Logged in as ${u.name} (login #${u.login_count})`, "ok");
    },
    onExpired() { show(text.expired, "bad"); },
    onError(err) { show("出错了 · Error: " + err.message, "bad"); },
  });
}

async function simulateScan() {
  if (!scene) return;
  const res = await fetch("/api/v1/dev/scan", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + scene.secret },
    body: JSON.stringify({ scene_id: scene.scene_id }),
  });
  if (!res.ok) show("模拟扫码失败 · Simulated scan failed", "bad");
}

async function init() {
  const cfg = await fetch("/api/v1/dev/config").then((r) => (r.ok ? r.json() : { demo: false })).catch(() => ({ demo: false }));
  $("demo-banner").hidden = !cfg.demo;
  $("scan").hidden = !cfg.demo;
  $("scan").addEventListener("click", simulateScan);
  $("refresh").addEventListener("click", start);
  $("polling").addEventListener("change", start);
  start();
}

init();
