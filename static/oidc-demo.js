// The OpenID Connect demo: this page is a relying party running in the browser. It asks
// wxlogin for a code (authorization code flow with PKCE, public client "demo"), exchanges
// it, checks the ID token's RS256 signature against the JWKS and its iss, aud, exp and
// nonce, shows the claims and asks userinfo. Everything it uses comes from discovery.
const page = document.body.dataset;
const issuer = page.issuer;
const clientID = page.client;
const redirectURI = page.redirect;
const $ = (id) => document.getElementById(id);
const stateKey = "oidc-demo:request";
const tokenKey = "oidc-demo:id_token";

const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

function say(zh, en, tone = "") {
  const el = $("status");
  el.replaceChildren(zh, Object.assign(document.createElement("span"), { className: "en", textContent: en }));
  el.className = "status " + tone;
}

async function discovery() {
  const res = await fetch(issuer + "/.well-known/openid-configuration");
  if (!res.ok) throw new Error("discovery answered " + res.status);
  return res.json();
}

async function start(prompt) {
  const d = await discovery();
  const verifier = random(32);
  const state = random(16);
  const nonce = random(16);
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(stateKey, JSON.stringify({ verifier, state, nonce }));
  const q = new URLSearchParams({
    client_id: clientID, redirect_uri: redirectURI, response_type: "code", scope: "openid profile",
    state, nonce, code_challenge: challenge, code_challenge_method: "S256",
  });
  if (prompt) q.set("prompt", prompt);
  location.assign(d.authorization_endpoint + "?" + q);
}

// verify checks the ID token as a relying party must (OpenID Connect Core §3.1.3.7).
async function verify(jwt, d, nonce) {
  const [h, p, s] = jwt.split(".");
  const header = JSON.parse(new TextDecoder().decode(fromB64url(h)));
  if (header.alg !== "RS256") throw new Error("unexpected alg " + header.alg);
  const jwks = await (await fetch(d.jwks_uri)).json();
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error("no key " + header.kid + " in the JWKS");
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
  const ok = await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, fromB64url(s), new TextEncoder().encode(h + "." + p));
  if (!ok) throw new Error("bad signature");
  const claims = JSON.parse(new TextDecoder().decode(fromB64url(p)));
  const aud = [].concat(claims.aud);
  if (claims.iss !== d.issuer || d.issuer !== issuer) throw new Error("wrong issuer " + claims.iss);
  if (!aud.includes(clientID)) throw new Error("wrong audience");
  if (claims.exp * 1000 < Date.now()) throw new Error("expired");
  if (claims.nonce !== nonce) throw new Error("nonce does not match");
  return claims;
}

function showClaims(claims) {
  const dl = $("claims");
  dl.replaceChildren();
  const rows = [
    ["sub", claims.sub], ["name", claims.name], ["login_count", claims.login_count],
    ["auth_time", new Date(claims.auth_time * 1000).toLocaleString()], ["iss", claims.iss],
    ["aud", [].concat(claims.aud).join(" ")], ["exp", new Date(claims.exp * 1000).toLocaleString()],
  ];
  for (const [k, v] of rows) {
    dl.append(Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: String(v ?? ""), id: "claim-" + k }));
  }
  dl.hidden = false;
}

async function finish(params) {
  const saved = JSON.parse(sessionStorage.getItem(stateKey) || "null");
  sessionStorage.removeItem(stateKey);
  history.replaceState(null, "", redirectURI); // the code leaves the address bar
  if (params.get("error")) throw new Error(params.get("error") + " " + (params.get("error_description") || ""));
  if (!saved || params.get("state") !== saved.state) throw new Error("state does not match this browser's request");
  const d = await discovery();
  const res = await fetch(d.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectURI,
      client_id: clientID, code_verifier: saved.verifier,
    }),
  });
  const tok = await res.json();
  if (!res.ok) throw new Error((tok.error || res.status) + " " + (tok.error_description || ""));
  const claims = await verify(tok.id_token, d, saved.nonce);
  sessionStorage.setItem(tokenKey, tok.id_token);
  document.body.dataset.status = "verified";
  say(`ID Token 已验证: ${claims.name}, 第 ${claims.login_count} 次登录`,
    `ID token verified: ${claims.name}, login number ${claims.login_count}`, "ok");
  showClaims(claims);
  const info = await fetch(d.userinfo_endpoint, { headers: { Authorization: "Bearer " + tok.access_token } });
  $("userinfo").textContent = "userinfo: " + JSON.stringify(await info.json(), null, 2);
  $("userinfo").hidden = false;
  $("logout").hidden = false;
  $("relogin").hidden = false;
}

async function logout() {
  const d = await discovery();
  const q = new URLSearchParams({ post_logout_redirect_uri: redirectURI, state: "logged-out", client_id: clientID });
  const hint = sessionStorage.getItem(tokenKey);
  if (hint) q.set("id_token_hint", hint);
  sessionStorage.removeItem(tokenKey);
  location.assign(d.end_session_endpoint + "?" + q);
}

async function init() {
  $("login").addEventListener("click", () => start("").catch(fail));
  $("relogin").addEventListener("click", () => start("login").catch(fail));
  $("logout").addEventListener("click", () => logout().catch(fail));
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    say("正在换取令牌…", "Exchanging the code…");
    await finish(params);
    return;
  }
  if (params.get("state") === "logged-out") {
    history.replaceState(null, "", redirectURI);
    document.body.dataset.status = "logged-out";
    say("已退出", "Logged out", "ok");
    return;
  }
  document.body.dataset.status = "ready";
  say("点击按钮, 用 wxlogin 登录这个演示应用", "Press the button to log in to this demo application with wxlogin");
}

function fail(err) {
  document.body.dataset.status = "error";
  say("出错了: " + err.message, "Something went wrong: " + err.message, "bad");
}

init().catch(fail);
