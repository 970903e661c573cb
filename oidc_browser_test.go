package main

import (
	"strings"
	"testing"
	"time"
)

// TestBrowserOIDCDemo runs demo mode's relying party in headless Chromium:
// its login link, the authorization endpoint, the QR page with the client's
// name, the simulated scan (WeChat's signed callback), back to the relying
// party, which exchanges the code with PKCE and verifies the ID token's
// signature, issuer, audience and nonce in the page. Then prompt=login asks
// for a second scan, and logout ends the session.
func TestBrowserOIDCDemo(t *testing.T) {
	srv := startTestServer(t, nil) // demo mode: the issuer is the server's own address
	b := startBrowser(t)
	b.open(srv.URL + "/")
	b.waitJS(`!document.getElementById("oidc-demo").hidden`, 10*time.Second)
	b.click("#oidc-demo a")

	b.waitAcross(`location.pathname === "/oidc/demo" && document.body.dataset.status === "ready"`, 10*time.Second)
	for round, prompt := range []string{"#login", "#relogin"} {
		b.click(prompt)
		b.waitAcross(`location.pathname.startsWith("/api/v1/oidc/login/")`, 10*time.Second)
		b.waitPending()
		if h1 := b.evalString(`document.querySelector("h1").textContent`); !strings.Contains(h1, "wxlogin OIDC demo") {
			t.Errorf("login page heading %q does not name the client", h1)
		}
		if round == 0 {
			b.screenshot("oidc-login")
		}
		b.click("#scan")
		b.waitAcross(`location.pathname === "/oidc/demo" && ["verified", "error"].includes(document.body.dataset.status)`, 15*time.Second)
		if st := b.evalString(`document.body.dataset.status`); st != "verified" {
			t.Fatalf("round %d: the relying party says %q: %s", round+1, st, b.evalString(`document.getElementById("status").textContent`))
		}
		if got := b.evalString(`document.getElementById("claim-login_count").textContent`); got != []string{"1", "2"}[round] {
			t.Errorf("round %d: login_count claim %q", round+1, got)
		}
		if sub := b.evalString(`document.getElementById("claim-sub").textContent`); !strings.HasPrefix(sub, "u_") {
			t.Errorf("sub claim %q", sub)
		}
		b.waitJS(`!document.getElementById("userinfo").hidden`, 5*time.Second)
		if info := b.evalString(`document.getElementById("userinfo").textContent`); !strings.Contains(info, `"login_count"`) {
			t.Errorf("userinfo shown: %q", info)
		}
		if search := b.evalString(`location.search`); search != "" {
			t.Errorf("the code stayed in the address bar: %q", search)
		}
	}
	b.screenshot("oidc-demo")
	b.click("#logout")
	b.waitAcross(`document.body.dataset.status === "logged-out"`, 10*time.Second)
	b.expectNoPageErrors()
}
