package main

// Shared helpers for the tests that drive the login page in a real Chromium
// (through chromedp): starting it, and waiting for what a user would see.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserTestTimeout bounds one browser test from Chromium's start to its end.
const browserTestTimeout = 60 * time.Second

// browser is one headless Chromium with one tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the page
}

// chromiumPath is Debian's Chromium unless WXLOGIN_CHROMIUM names another.
func chromiumPath() string {
	if p := os.Getenv("WXLOGIN_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// startBrowser starts Chromium with a fresh profile and a phone-sized window,
// or fails the test saying why. It stops at cleanup.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Chromium not found at %s: %v\n"+
			"The browser tests need it: apt-get install -y chromium (.ci/run does this), or set WXLOGIN_CHROMIUM.", path, err)
	}
	var output syncBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&output),
	)
	// The deadline bounds the whole test: it ends the browser with it.
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the process to exit
		cancel()
	})
	b := &browser{t: t, ctx: bctx}
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("cannot start Chromium (%s): %v\nits output:\n%s", path, err, output.String())
	}
	if err := chromedp.Listen(bctx, b.record); err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
	// The page runs under a strict CSP; a violation is a bug in the page.
	b.beforeEachPage(`document.addEventListener("securitypolicyviolation",
		(e) => console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI));`)
	return b
}

// record keeps the page's uncaught exceptions and console errors. It runs on
// chromedp's reading goroutine, so it only appends.
func (b *browser) record(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "uncaught: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		msg = "console.error: " + strings.Join(parts, " ")
	default:
		return
	}
	b.mu.Lock()
	b.errors = append(b.errors, msg)
	b.mu.Unlock()
}

func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

func (b *browser) expectNoPageErrors() {
	b.t.Helper()
	for _, e := range b.pageErrors() {
		b.t.Errorf("page: %s", e)
	}
}

// beforeEachPage runs the script at the start of every document of the tab.
func (b *browser) beforeEachPage(script string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: script}); err != nil {
		b.t.Fatalf("add script: %v", err)
	}
}

// open shows the page on a phone-sized screen (the page is also what a
// person sees in WeChat's own browser).
func (b *browser) open(u string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(400, 860, chromedp.EmulateScale(2)), chromedp.Navigate(u)); err != nil {
		b.t.Fatalf("open %s: %v", u, err)
	}
}

// waitJS waits until the expression is true, or fails with what the page shows.
func (b *browser) waitJS(expr string, timeout time.Duration) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		b.t.Fatalf("waiting for %s: %v\n%s", expr, err, b.describe())
	}
}

// describe is what the page shows, for a failure message.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`"status=" + document.body.dataset.status + " mode=" + document.body.dataset.mode +
		 " text=" + document.getElementById("status").textContent`))
	if err != nil {
		s = "(cannot read the page: " + err.Error() + ")"
	}
	return fmt.Sprintf("page: %s\npage errors: %q", s, b.pageErrors())
}

func (b *browser) evalString(expr string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// click clicks the element once it is visible and enabled.
func (b *browser) click(selector string) {
	b.t.Helper()
	b.waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && !e.disabled && e.offsetParent !== null; })()`, selector), 10*time.Second)
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		b.t.Fatalf("click %s: %v\n%s", selector, err, b.describe())
	}
}

// waitPending waits for a loaded QR code of a waiting scene and returns the scene id.
func (b *browser) waitPending() string {
	b.t.Helper()
	b.waitJS(`document.body.dataset.status === "pending" && !!document.getElementById("qr").dataset.scene &&
		document.getElementById("qr").complete && document.getElementById("qr").naturalWidth > 0`, 15*time.Second)
	return b.evalString(`document.getElementById("qr").dataset.scene`)
}

// waitNewScene waits for a QR code of a scene other than old.
func (b *browser) waitNewScene(old string) string {
	b.t.Helper()
	b.waitJS(fmt.Sprintf(`(() => { const q = document.getElementById("qr");
		return !!q.dataset.scene && q.dataset.scene !== %q && q.complete && q.naturalWidth > 0; })()`, old), 15*time.Second)
	return b.evalString(`document.getElementById("qr").dataset.scene`)
}

// waitLoggedIn waits for the page to greet the demo user with the count.
func (b *browser) waitLoggedIn(count int) {
	b.t.Helper()
	b.waitJS(`document.body.dataset.status === "logged-in"`, 15*time.Second)
	text := b.evalString(`document.getElementById("status").textContent`)
	zh := fmt.Sprintf("微信用户, 登录成功! 这是你第 %d 次登录", count)
	en := fmt.Sprintf("Logged in as 微信用户, for the %s time", ordinal(count))
	if !strings.Contains(text, zh) || !strings.Contains(text, en) {
		b.t.Errorf("status text %q; want %q and %q", text, zh, en)
	}
	if got := b.evalString(`document.getElementById("user-count").textContent`); got != fmt.Sprint(count) {
		b.t.Errorf("user card count %q; want %d", got, count)
	}
}

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}

// screenshot saves the visible page as a PNG and checks it is a real image.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		b.t.Fatalf("screenshot %s: %d bytes, not a PNG of a page", name, len(png))
	}
	dir := os.Getenv("WXLOGIN_SCREENSHOT_DIR")
	if dir == "" {
		dir = b.t.TempDir()
	}
	file := filepath.Join(dir, name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatalf("save screenshot: %v", err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", file, len(png))
}

// waitAcross is waitJS for a condition that holds only after the page has
// navigated: an evaluation that meets a page being replaced is tried again.
func (b *browser) waitAcross(expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("waiting for %s (last error %v)\n%s", expr, last, b.describe())
}
