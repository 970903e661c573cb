package main

// Sharing the account's webhook: wxlogin passes every verified message that
// is not a login to the site's existing handler (a real local HTTP server
// here, which checks WeChat's signature and in safe mode decrypts, as a
// real handler would), relays its answer byte for byte, and answers
// "success" when the handler is slow, down or failing.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"
	"wxlogin/wechat"
)

// sendForwardable sends a push the simulator has no helper for (clicks, locations).
func sendForwardable(t testing.TB, sim *wechat.Simulator, ev wechat.Event) (wechat.Reply, *http.Request, []byte) {
	t.Helper()
	req, err := sim.Request(context.Background(), ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	r, err := sim.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return r, req, body
}

func TestForwardRelaysWhatIsNotALogin(t *testing.T) {
	const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	for _, mode := range []struct{ name, aes string }{{"plain", ""}, {"aes", aesKey}} {
		t.Run(mode.name, func(t *testing.T) {
			site, siteSrv := newSiteHandler(t, mode.aes)
			srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL + "/wechat", "WECHAT_AES_KEY": mode.aes})
			sim := codeSimulator(srv, mode.aes)
			now := time.Now()
			for i, ev := range []wechat.Event{
				wechat.TextMessage("oSite_000000000000000000001", "你好", msgIDs.Add(1), now),
				wechat.TextMessage("oSite_000000000000000000001", "1234567", msgIDs.Add(1), now), // not a code's shape
				{OpenID: "oSite_000000000000000000001", Event: "CLICK", EventKey: "MENU_HELP", CreateTime: now},
				{OpenID: "oSite_000000000000000000001", Event: "subscribe", CreateTime: now}, // a plain follow
				{OpenID: "oSite_000000000000000000001", Event: "LOCATION", CreateTime: now},
				{OpenID: "oSite_000000000000000000001", Event: "SCAN", EventKey: "site-own-qr-7", CreateTime: now}, // the site's own QR
			} {
				r, req, body := sendForwardable(t, sim, ev)
				got := site.requests()
				if len(got) != i+1 {
					t.Fatalf("message %d (%s %s): the site got %d requests", i, ev.MsgType, ev.Event, len(got))
				}
				last := got[i]
				if last.rawQuery != req.URL.RawQuery || !bytes.Equal(last.body, body) {
					t.Fatalf("message %d: forwarded query/body differ from WeChat's", i)
				}
				if r.Status != http.StatusOK || r.Body != string(last.answer) || !strings.HasPrefix(r.Text, "site saw ") {
					t.Fatalf("message %d: WeChat got %d %q, want the site's answer %q", i, r.Status, r.Body, last.answer)
				}
			}
			if n := labelledMetric(t, srv.URL, `wxlogin_forwards_total{mode="reply",result="ok"}`); n != 6 {
				t.Errorf("forwards_total{reply,ok} = %v", n)
			}
		})
	}
}

func TestForwardNeverSendsLoginsOrForgeries(t *testing.T) {
	site, siteSrv := newSiteHandler(t, "")
	srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL})
	sim := codeSimulator(srv, "")

	// A scan of a login QR and a login code: answered by wxlogin, not forwarded.
	sc := createCodeScene(t, srv.URL)
	if r, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oScan_00000000000000000000001", false, time.Now())); err != nil || !strings.Contains(r.Text, "登录成功") {
		t.Fatalf("scan: %+v %v", r, err)
	}
	sc2 := createCodeScene(t, srv.URL)
	if r, _ := sendText(t, sim, "oCode_00000000000000000000001", sc2.LoginCode, 0); !strings.Contains(r.Text, "登录成功") {
		t.Fatalf("code: %q", r.Text)
	}
	if r, _ := sendText(t, sim, "oCode_00000000000000000000001", "000000", 0); !strings.Contains(r.Text, "没有找到") && sc2.LoginCode != "000000" {
		t.Fatalf("miss: %q", r.Text)
	}
	// Forged: a wrong token's signature is refused and never forwarded.
	forged := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: "not-the-token"}
	if r, err := forged.Send(context.Background(), wechat.TextMessage("oForger_00000000000000000001", "hi", 1, time.Now())); err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("forged: %+v %v", r, err)
	}
	// The URL check (GET echo) is answered by wxlogin.
	ts := fmt.Sprint(time.Now().Unix())
	resp, err := http.Get(srv.URL + "/wechat/callback?echostr=echo123&nonce=n1&timestamp=" + ts + "&signature=" + util.Signature(clusterToken, ts, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(echo) != "echo123" {
		t.Fatalf("echo %q", echo)
	}
	if got := site.requests(); len(got) != 0 {
		t.Fatalf("the site got %d requests; none was for it", len(got))
	}
}

// TestForwardAfterAnswering: a new follower through a login QR is logged in
// by wxlogin at once, and the site hears of the follow afterwards (its
// answer dropped); so it does of an unsubscribe. A slow site handler does
// not delay the login reply, and shutdown waits for the forward.
func TestForwardAfterAnswering(t *testing.T) {
	site, siteSrv := newSiteHandler(t, "")
	release := make(chan struct{})
	site.respond = func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "<xml>dropped</xml>")
	}
	srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL})
	sim := codeSimulator(srv, "")
	sc := createCodeScene(t, srv.URL)
	start := time.Now()
	r, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oNew_000000000000000000000001", true, time.Now()))
	if err != nil || !strings.Contains(r.Text, "登录成功") {
		t.Fatalf("login by first follow: %+v %v", r, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the login reply waited %v for the site", d)
	}
	waitFor(t, 5*time.Second, "the site hears of the new follower", func() bool { return len(site.requests()) == 1 })
	if got := site.requests()[0].msg; got.Event != "subscribe" || got.EventKey != "qrscene_"+sc.SceneID {
		t.Fatalf("site got %s %s", got.Event, got.EventKey)
	}
	if r, err := sim.Send(context.Background(), wechat.Event{OpenID: "oNew_000000000000000000000001", Event: "unsubscribe", CreateTime: time.Now()}); err != nil || r.Body != "success" {
		t.Fatalf("unsubscribe: %+v %v", r, err)
	}
	waitFor(t, 5*time.Second, "the site hears of the unsubscribe", func() bool { return len(site.requests()) == 2 })
	// Shutdown waits for the two forwards still held by the site.
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned (%v) with forwards in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if n := forwardFailureLogged(srv.Logs.String()); n != "" {
		t.Fatalf("forward failure logged: %s", n)
	}
}

// forwardFailureLogged finds a logged forward failure (the server is stopped:
// its metrics are gone, its log is not).
func forwardFailureLogged(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "forward to the account's handler failed") {
			return line
		}
	}
	return ""
}

func TestForwardFailuresAnswerSuccess(t *testing.T) {
	slow, slowSrv := newSiteHandler(t, "")
	slow.respond = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(8 * time.Second):
		}
	}
	broken, brokenSrv := newSiteHandler(t, "")
	broken.respond = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }
	redirect, redirectSrv := newSiteHandler(t, "")
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Store(true) }))
	t.Cleanup(elsewhere.Close)
	redirect.respond = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name, target, result string
		within               time.Duration
	}{
		{"slower than WeChat waits", slowSrv.URL, "timeout", 5 * time.Second},
		{"500", brokenSrv.URL, "http_error", time.Second},
		{"redirect not followed", redirectSrv.URL, "http_error", time.Second},
		{"connection refused", refused, "conn_error", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": tc.target})
			start := time.Now()
			r, _ := sendText(t, codeSimulator(srv, ""), "oFail_00000000000000000000001", "menu", 0)
			if d := time.Since(start); r.Body != "success" || d > tc.within {
				t.Fatalf("WeChat got %q after %v, want success within %v", r.Body, d, tc.within)
			}
			if n := labelledMetric(t, srv.URL, `wxlogin_forwards_total{mode="reply",result="`+tc.result+`"}`); n != 1 {
				t.Fatalf("forwards_total{%s} = %v", tc.result, n)
			}
			logs := srv.Logs.String()
			if !strings.Contains(logs, "result="+tc.result) || strings.Contains(logs, "oFail_") || strings.Contains(logs, "signature=") {
				t.Fatalf("log must name the failure, never the query or sender:\n%s", logs)
			}
		})
	}
	if followed.Load() {
		t.Fatal("a redirect was followed")
	}
}

// TestForwardStalledHandlerStaysBounded: 200 messages at once to a handler
// that never answers: WeChat gets "success" for each within the timeout,
// the handler sees at most the in-flight bound, and every goroutine the
// forwards took is returned.
func TestForwardStalledHandlerStaysBounded(t *testing.T) {
	site, siteSrv := newSiteHandler(t, "")
	site.respond = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL, "WXLOGIN_FORWARD_TIMEOUT": "1s"})
	sim := codeSimulator(srv, "")
	sim.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	sendText(t, sim, "oWarm_00000000000000000000001", "warm up", 0)
	baseline := runtime.NumGoroutine()

	const n = 200
	var wg sync.WaitGroup
	var answered atomic.Int64
	start := time.Now()
	for range n {
		wg.Go(func() {
			r, err := sim.Send(context.Background(), wechat.TextMessage("oStall_0000000000000000000001", "hello", msgIDs.Add(1), time.Now()))
			if err == nil && r.Status == http.StatusOK && r.Body == "success" {
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	if answered.Load() != n || time.Since(start) > 5*time.Second {
		t.Fatalf("%d of %d answered success in %v", answered.Load(), n, time.Since(start))
	}
	if peak := site.peak.Load(); peak > 64 {
		t.Fatalf("the stalled handler held %d forwards at once, want at most 64", peak)
	}
	busy := labelledMetric(t, srv.URL, `wxlogin_forwards_total{mode="reply",result="busy"}`)
	timeouts := labelledMetric(t, srv.URL, `wxlogin_forwards_total{mode="reply",result="timeout"}`)
	if busy+timeouts != n+1 || busy == 0 { // +1: the warm-up
		t.Fatalf("busy %v + timeout %v, want %d with some busy", busy, timeouts, n+1)
	}
	sim.Client.CloseIdleConnections()
	waitFor(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+5
	})
}

// TestForwardCompatibleModeKeepsWeChatsQuery: while wxlogin has no AES key
// and the console is in compatible mode, wxlogin reads the plaintext copy,
// but the site's handler (which has the key) gets WeChat's own query, with
// encrypt_type and msg_signature, and the body as sent, so it decrypts as
// it always did.
func TestForwardCompatibleModeKeepsWeChatsQuery(t *testing.T) {
	site, siteSrv := newSiteHandler(t, testAESKey)
	srv := startTestServer(t, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL})
	msg := compatibleMode(t, srv, wechat.TextMessage("oCompat_0000000000000000000001", "菜单", msgIDs.Add(1), time.Now()), time.Now())
	status, body := sendRaw(t, srv.URL, msg.q, msg.body)
	got := site.requests()
	if len(got) != 1 {
		t.Fatalf("the site got %d requests", len(got))
	}
	if got[0].rawQuery != msg.q.Encode() || !strings.Contains(got[0].rawQuery, "encrypt_type=aes") || !bytes.Equal(got[0].body, msg.body) {
		t.Fatalf("forwarded query %q, want WeChat's %q (and its body)", got[0].rawQuery, msg.q.Encode())
	}
	if got[0].msg.Content != "菜单" {
		t.Fatalf("the site decrypted %q", got[0].msg.Content)
	}
	if status != http.StatusOK || body != string(got[0].answer) {
		t.Fatalf("WeChat got %d %q, want the site's answer", status, body)
	}
}
