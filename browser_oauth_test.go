package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// weChatUserAgent is WeChat's own browser on an iPhone.
const weChatUserAgent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 " +
	"(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN"

// TestBrowserWeChatOAuth: inside WeChat's browser the demo page offers one
// "Log in with WeChat" button instead of the QR code; the tap goes through
// the stand-in's authorisation page and back, and the page it returns to
// finishes the login by itself.
func TestBrowserWeChatOAuth(t *testing.T) {
	srv := startTestServer(t, nil)
	b := startBrowser(t)
	if _, err := chromedp.Call(b.ctx, emulation.SetUserAgentOverride,
		emulation.SetUserAgentOverrideParams{UserAgent: weChatUserAgent}); err != nil {
		t.Fatalf("user agent: %v", err)
	}
	b.open(srv.URL)
	b.waitJS(`document.body.dataset.method === "oauth" && document.body.dataset.status === "pending"`, 15*time.Second)
	if shown := b.evalString(`String(!document.getElementById("qr-box").hidden) + "," + String(!!document.getElementById("qr").getAttribute("src"))`); shown != "false,false" {
		t.Errorf("QR box shown, QR loaded = %s; want neither inside WeChat", shown)
	}
	scene := b.evalString(`document.getElementById("wechat-login").dataset.scene`)
	b.screenshot("wechat-button")
	b.click("#wechat-login")

	// The stand-in's authorisation page, on our own origin.
	waitAcrossNavigation(b, `location.pathname === "/api/v1/dev/oauth/authorize" && !!document.querySelector("button[value=allow]")`)
	if !strings.HasPrefix(b.evalString(`location.href`), srv.URL+"/") {
		t.Fatalf("authorisation page at %s; want our own origin", b.evalString(`location.href`))
	}
	b.screenshot("wechat-authorize")
	b.click("button[value=allow]")

	waitAcrossNavigation(b, `location.pathname === "/" && document.readyState === "complete"`)
	b.waitLoggedIn(1)
	if got := b.evalString(`location.pathname + "|" + document.getElementById("wechat-login").dataset.scene`); got != "/|"+scene {
		t.Errorf("back at %q; want the demo page, finishing scene %s", got, scene)
	}
	b.screenshot("wechat-logged-in")
	b.expectNoPageErrors()
}

// waitAcrossNavigation waits for expr to be true while the tab navigates
// (an evaluation that lands between two documents fails; it is tried again).
func waitAcrossNavigation(b *browser, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting for %s: %v (at %s)", expr, err, b.evalString("location.href"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
