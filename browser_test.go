package main

// Browser tests: the demo page and qrlogin.js in a real headless Chromium,
// against the real service started by run. Every page goes through a small
// recording proxy, so a test can tell which way the page waited (stream or
// polling), that it exchanged the code once, and that it went quiet after
// the login. The proxy can also buffer or refuse the event stream, as a
// misconfigured proxy in front of wxlogin would.
//
// Chromium: /usr/bin/chromium (Debian's package; .ci/run installs it), or
// the path in WXLOGIN_CHROMIUM. When it cannot start, the tests fail: a
// missing browser must never pass for a working client.
// Screenshots go to the test's temp dir, or to WXLOGIN_SCREENSHOT_DIR when
// set (to look at them, or to update docs/demo.png).

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserStream: the page waits over EventSource; a signed WeChat
// callback (the simulate button) logs the person in, and a second round
// counts a second login.
func TestBrowserStream(t *testing.T) {
	srv := startTestServer(t, nil)
	proxy := startRecordingProxy(t, srv.URL, passStream)
	b := startBrowser(t)
	b.open(proxy.URL)

	first := b.waitPending()
	b.waitJS(`document.body.dataset.mode === "stream"`, 10*time.Second)
	b.screenshot("stream-waiting") // docs/demo.png comes from here
	b.click("#scan")
	b.waitLoggedIn(1)

	// A second round: a new QR code, and the count goes up.
	b.click("#refresh")
	second := b.waitNewScene(first)
	b.click("#scan")
	b.waitLoggedIn(2)
	b.screenshot("stream-logged-in")

	proxy.expectQuiet(t, 3*time.Second)
	for _, id := range []string{first, second} {
		if n := proxy.count("events", id); n < 1 {
			t.Errorf("scene %s: %d stream requests; the page should have used EventSource", id, n)
		}
		if n := proxy.count("poll", id); n != 0 {
			t.Errorf("scene %s: %d poll requests; the stream worked, so none were needed", id, n)
		}
	}
	if n := proxy.count("token", ""); n != 2 {
		t.Errorf("%d token exchanges for 2 logins; want exactly one per scene", n)
	}
	b.expectNoPageErrors()
}

// TestBrowserFallback: the page completes by polling when EventSource is
// missing, when a proxy buffers the stream (no first event in time), when a
// proxy refuses the stream, and when the stream keeps dropping (EventSource
// reconnects on its own; the client gives up after a few errors).
func TestBrowserFallback(t *testing.T) {
	cases := []struct {
		name        string
		mode        streamMode
		noEventSrc  bool
		useSwitch   bool // the person ticks "use polling"
		slowDown    bool // the first poll gets 429 slow_down with Retry-After: 3
		wantStreams bool // whether the page should have tried the stream first
	}{
		{name: "no-eventsource", mode: passStream, noEventSrc: true, slowDown: true},
		{name: "switch", mode: passStream, useSwitch: true, wantStreams: true},
		{name: "buffering-proxy", mode: bufferStream, wantStreams: true},
		{name: "stream-refused", mode: refuseStream, wantStreams: true},
		{name: "stream-drops", mode: dropStream, wantStreams: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTestServer(t, nil)
			proxy := startRecordingProxy(t, srv.URL, tc.mode)
			if tc.slowDown {
				proxy.mu.Lock()
				proxy.slowDownFirstPoll = 3 * time.Second
				proxy.mu.Unlock()
			}
			b := startBrowser(t)
			if tc.noEventSrc {
				b.beforeEachPage(`delete window.EventSource;`)
			}
			b.open(proxy.URL)

			id := b.waitPending()
			if tc.useSwitch {
				b.waitJS(`document.body.dataset.mode === "stream"`, 10*time.Second)
				b.click("#polling")
			}
			// The buffering case waits for the client's first-event timeout (5 s).
			b.waitJS(`document.body.dataset.mode === "polling"`, 15*time.Second)
			if got := b.evalString(`document.getElementById("polling").checked ? "on" : "off"`); got != "on" {
				t.Errorf("the polling switch shows %q after the fallback; want on", got)
			}
			b.click("#scan")
			b.waitLoggedIn(1)
			b.screenshot("fallback-" + tc.name)

			proxy.expectQuiet(t, 3*time.Second)
			if n := proxy.count("poll", id); n < 1 {
				t.Errorf("%d poll requests; the login should have come by polling", n)
			}
			if tc.slowDown && proxy.count("poll", id) < 2 {
				t.Errorf("the page stopped polling after a slow_down")
			}
			proxy.checkPollPacing(t, id, 2*time.Second)
			if n := proxy.count("events", id); tc.wantStreams != (n > 0) {
				t.Errorf("%d stream requests; want some: %v", n, tc.wantStreams)
			}
			if n := proxy.count("events", id); tc.mode == dropStream && n != 3 {
				t.Errorf("%d stream requests; the client should give up after exactly 3 failed ones", n)
			}
			if n := proxy.count("token", ""); n != 1 {
				t.Errorf("%d token exchanges; want exactly 1", n)
			}
			b.expectNoPageErrors()
		})
	}
}

// TestBrowserExpiry: a short-lived QR code shows "expired", and refresh
// brings a new one for a new scene.
func TestBrowserExpiry(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_QR_TTL": "3s"})
	proxy := startRecordingProxy(t, srv.URL, passStream)
	b := startBrowser(t)
	b.open(proxy.URL)

	first := b.waitPending()
	b.waitJS(`document.body.dataset.status === "expired"`, 15*time.Second)
	status := b.evalString(`document.getElementById("status").textContent`)
	if !strings.Contains(status, "过期") || !strings.Contains(status, "expired") {
		t.Errorf("status text %q; want it to say 过期 and expired", status)
	}
	b.screenshot("expired")

	b.click("#overlay-refresh")
	second := b.waitNewScene(first)
	b.waitJS(`document.body.dataset.status === "pending"`, 5*time.Second)
	b.screenshot("expired-refreshed")
	if n := proxy.count("create", ""); n != 2 {
		t.Errorf("%d scenes created; want 2 (the first and the refresh)", n)
	}
	if !strings.Contains(b.evalString(`document.getElementById("qr").src`), second) {
		t.Errorf("the QR image is not the new scene's")
	}
	b.expectNoPageErrors()
}

// TestBrowserReload: reloading the page while it waits keeps the same QR
// code, reconnects, and the login still completes.
func TestBrowserReload(t *testing.T) {
	srv := startTestServer(t, nil)
	proxy := startRecordingProxy(t, srv.URL, passStream)
	b := startBrowser(t)
	b.open(proxy.URL)

	before := b.waitPending()
	b.waitJS(`document.body.dataset.mode === "stream"`, 10*time.Second)
	if err := chromedp.Do(b.ctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	after := b.waitPending()
	if after != before {
		t.Errorf("after the reload the page shows scene %s; want the same scene %s", after, before)
	}
	b.click("#scan")
	b.waitLoggedIn(1)
	b.screenshot("reload-logged-in")
	if n := proxy.count("create", ""); n != 1 {
		t.Errorf("%d scenes created; the reload should have kept the first", n)
	}

	// Once logged in, a reload starts over with a new QR code.
	if err := chromedp.Do(b.ctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if next := b.waitPending(); next == before {
		t.Errorf("after the login a reload shows the used scene %s again", next)
	}
	if n := proxy.count("events", before); n < 2 {
		t.Errorf("%d stream requests; want one before and one after the reload", n)
	}
	if n := proxy.count("token", ""); n != 1 {
		t.Errorf("%d token exchanges; want exactly 1", n)
	}
	b.expectNoPageErrors()
}

// TestBrowserOtherOrigin: the README's use of qrlogin.js from a page on
// another origin of the same site, with WXLOGIN_ALLOWED_ORIGINS. The stream
// must work there too (the scene's cookie goes with credentials), not only
// the polling fallback.
func TestBrowserOtherOrigin(t *testing.T) {
	var wxloginURL atomic.Value // set once the service runs; the site needs its origin first
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, otherOriginPage, wxloginURL.Load(), wxloginURL.Load())
	}))
	t.Cleanup(site.Close)
	srv := startTestServer(t, map[string]string{"WXLOGIN_ALLOWED_ORIGINS": site.URL})
	wxloginURL.Store(srv.URL)
	b := startBrowser(t)
	b.open(site.URL)

	b.waitJS(`document.getElementById("msg").textContent === "pending" && window.login.mode === "stream"`, 15*time.Second)
	id := b.evalString(`window.scene.scene_id`)
	secret := b.evalString(`window.scene.secret`)
	if resp := apiCall(t, http.MethodPost, srv.URL+"/api/v1/dev/scan", secret, map[string]string{"scene_id": id}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("dev/scan: %d", resp.StatusCode)
	}
	b.waitJS(`document.getElementById("msg").textContent === "logged in 1"`, 15*time.Second)
	if mode := b.evalString(`window.login.mode`); mode != "stream" {
		t.Errorf("the client waited by %s; the stream should work across origins of one site", mode)
	}
	b.screenshot("other-origin")
	b.expectNoPageErrors()
}

// otherOriginPage is the README's example, with hooks for the test.
const otherOriginPage = `<!doctype html><meta charset="utf-8">
<img id="qr" alt="WeChat QR code"> <p id="msg"></p>
<script type="module">
  import { QRLogin } from "%s/static/qrlogin.js";
  const msg = document.getElementById("msg");
  window.login = QRLogin.start({
    base: "%s", qr: document.getElementById("qr"),
    onScene: (s) => (window.scene = s),
    onStatus: (status) => (msg.textContent = status),
    onLogin: (s) => (msg.textContent = "logged in " + s.user.login_count),
    onError: (e) => (msg.textContent = "error " + e.message),
  });
</script>`

// --- the browser --------------------------------------------------------

// --- the recording proxy -------------------------------------------------

// streamMode is what the proxy does with event-stream requests.
type streamMode int

const (
	passStream   streamMode = iota // pass events through at once
	bufferStream                   // hold the answer until the upstream ends, as a buffering proxy does
	refuseStream                   // answer 502
	dropStream                     // open the stream, ask for a quick reconnect, close
)

// recordingProxy sits between the browser and wxlogin and notes every request.
type recordingProxy struct {
	URL string

	mu       sync.Mutex
	requests []proxiedRequest
	// slowDownFirstPoll, when set, answers the first poll with 429
	// slow_down and this Retry-After, as a server would to a fast poller.
	slowDownFirstPoll time.Duration
}

type proxiedRequest struct {
	at, end   time.Time
	kind      string // create, poll, events, token, scan, qr, page
	sceneID   string
	throttled bool // answered 429 slow_down by the proxy
}

var scenePath = regexp.MustCompile(`^/api/v1/login/scenes/([^/]+)(/events|/qr\.png)?$`)

func startRecordingProxy(t *testing.T, target string, mode streamMode) *recordingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	rp := httputil.NewSingleHostReverseProxy(u) // flushes text/event-stream at once
	rp.Transport = transport
	p := &recordingProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, kind := p.record(r)
		defer p.finished(i)
		switch {
		case kind == "poll" && p.throttle(i):
			w.Header().Set("Retry-After", fmt.Sprint(int(p.slowDownFirstPoll/time.Second)))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"slow_down","message":"polling faster than the interval"}`)
		case kind == "events" && mode == bufferStream:
			p.buffered(w, r, transport, target)
		case kind == "events" && mode == refuseStream:
			http.Error(w, "bad gateway", http.StatusBadGateway)
		case kind == "events" && mode == dropStream:
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "retry: 100\n\n")
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	p.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		transport.CloseIdleConnections()
	})
	return p
}

func (p *recordingProxy) record(r *http.Request) (int, string) {
	req := proxiedRequest{at: time.Now(), kind: "page"}
	switch {
	case r.URL.Path == "/api/v1/login/scenes" && r.Method == http.MethodPost:
		req.kind = "create"
	case r.URL.Path == "/api/v1/login/token":
		req.kind = "token"
	case r.URL.Path == "/api/v1/dev/scan":
		req.kind = "scan"
	case strings.HasPrefix(r.URL.Path, "/api/"):
		req.kind = "api"
	}
	if m := scenePath.FindStringSubmatch(r.URL.Path); m != nil {
		req.sceneID = m[1]
		req.kind = map[string]string{"": "poll", "/events": "events", "/qr.png": "qr"}[m[2]]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, req)
	return len(p.requests) - 1, req.kind
}

func (p *recordingProxy) finished(i int) {
	p.mu.Lock()
	p.requests[i].end = time.Now()
	p.mu.Unlock()
}

// throttle reports whether request i, a poll, is to be answered with 429.
func (p *recordingProxy) throttle(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slowDownFirstPoll == 0 {
		return false
	}
	for _, r := range p.requests[:i] {
		if r.kind == "poll" {
			return false
		}
	}
	p.requests[i].throttled = true
	return true
}

// checkPollPacing checks the gaps between a scene's polls: at least the
// interval from the end of one to the start of the next, and at least
// Retry-After after a slow_down. The client's timers never fire early, so
// a shorter gap is a bug, not jitter.
func (p *recordingProxy) checkPollPacing(t *testing.T, sceneID string, interval time.Duration) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var prev *proxiedRequest
	for i := range p.requests {
		r := &p.requests[i]
		if r.kind != "poll" || r.sceneID != sceneID {
			continue
		}
		if prev != nil {
			want := interval
			if prev.throttled {
				want = max(want, p.slowDownFirstPoll)
			}
			if gap := r.at.Sub(prev.end); gap < want {
				t.Errorf("a poll %s after the previous one ended (throttled: %v); want at least %s", gap.Round(time.Millisecond), prev.throttled, want)
			}
		}
		prev = r
	}
}

// buffered answers only when the upstream answer is complete, like a proxy
// with response buffering on: an event stream then shows nothing until it ends.
func (p *recordingProxy) buffered(w http.ResponseWriter, r *http.Request, rt http.RoundTripper, target string) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := rt.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // ends when the stream ends or the browser leaves
	if err != nil && r.Context().Err() != nil {
		return
	}
	maps.Copy(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// count is the number of requests of a kind (for one scene, unless sceneID is "").
func (p *recordingProxy) count(kind, sceneID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.requests {
		if r.kind == kind && (sceneID == "" || r.sceneID == sceneID) {
			n++
		}
	}
	return n
}

// expectQuiet checks that the page makes no API request for d: after a
// terminal status the client must stop all network activity. d is longer
// than the poll interval (2 s), so a poll loop left running shows.
func (p *recordingProxy) expectQuiet(t *testing.T, d time.Duration) {
	t.Helper()
	start := time.Now()
	time.Sleep(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.requests {
		if r.at.After(start) && r.kind != "page" {
			t.Errorf("a %s request (scene %s) %s after the login; want none", r.kind, r.sceneID, r.at.Sub(start).Round(time.Millisecond))
		}
	}
}

// TestStaticFiles: the page and the client are served with validators, so a
// browser revalidates for a 304 instead of downloading them again, and other
// sites can import the client as a module.
func TestStaticFiles(t *testing.T) {
	srv := startTestServer(t, nil)

	resp := apiCall(t, http.MethodGet, srv.URL+"/static/qrlogin.js", "", nil, nil)
	body, _ := io.ReadAll(resp.Body)
	etag := resp.Header.Get("ETag")
	switch {
	case resp.StatusCode != http.StatusOK:
		t.Fatalf("GET /static/qrlogin.js: %d", resp.StatusCode)
	case !strings.Contains(resp.Header.Get("Content-Type"), "javascript"):
		t.Errorf("Content-Type %q; a module needs a JavaScript type", resp.Header.Get("Content-Type"))
	case !strings.Contains(resp.Header.Get("Cache-Control"), "max-age="):
		t.Errorf("Cache-Control %q; want a max-age", resp.Header.Get("Cache-Control"))
	case etag == "":
		t.Errorf("no ETag: a browser could not revalidate")
	case resp.Header.Get("Access-Control-Allow-Origin") != "*":
		t.Errorf("Access-Control-Allow-Origin %q; other sites import the module", resp.Header.Get("Access-Control-Allow-Origin"))
	case !bytes.Contains(body, []byte("export class QRLogin")):
		t.Errorf("the body is not the client")
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/static/qrlogin.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %d; want 304", resp.StatusCode)
	}

	page := apiCall(t, http.MethodGet, srv.URL+"/", "", nil, nil)
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the page's CSP is %q; want scripts from this origin only", csp)
	}
	for _, path := range []string{"/static/", "/static/static.go", "/static/../main.go", "/static/nope.js"} {
		if resp := apiCall(t, http.MethodGet, srv.URL+path, "", nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d; want 404", path, resp.StatusCode)
		}
	}
}

// TestBrowserCodeLogin: the page shows the login code beside the QR code
// when both methods are on, and the code alone (no QR) with only the code
// method; "simulate sending the code" sends the person's signed message to
// the webhook and the page logs in.
func TestBrowserCodeLogin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		methods string
		qrShown bool
	}{
		{"side by side", "", true},
		{"code only", "code", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTestServer(t, map[string]string{"WXLOGIN_METHODS": tc.methods, "WXLOGIN_ACCOUNT_NAME": "示例公众号"})
			b := startBrowser(t)
			b.open(srv.URL)
			b.waitJS(`document.body.dataset.status === "pending" && /^\d{6}$/.test(document.getElementById("login-code").textContent)
				&& !document.getElementById("send-code").hidden`, 15*time.Second)
			how := b.evalString(`document.getElementById("code-how").textContent`)
			if !strings.Contains(how, "「示例公众号」") || !strings.Contains(how, "this code to 示例公众号") {
				t.Errorf("the page does not name the account: %q", how)
			}
			qrShown := b.evalString(`String(getComputedStyle(document.getElementById("qr-box")).display !== "none" && !document.getElementById("scan").hidden)`)
			if qrShown != fmt.Sprint(tc.qrShown) {
				t.Errorf("QR and its button shown: %s, want %v", qrShown, tc.qrShown)
			}
			if tc.qrShown {
				b.screenshot("code-beside-qr")
			}
			b.click("#send-code")
			b.waitLoggedIn(1)
			b.expectNoPageErrors()
		})
	}
}
