package main

// The service's life as operators see it. Graceful shutdown of the real
// binary on SIGTERM: it stops accepting, ends every stream with a final retry
// hint, answers long-polls, lets an in-flight callback finish, closes bbolt,
// and exits 0 within the grace time. Readiness: storage, not WeChat.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"wxlogin/storage"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := buildWxlogin(t)
	t.Run("loses nothing", func(t *testing.T) { shutdownLosesNothing(t, bin) })
	t.Run("grace bounds stuck requests", func(t *testing.T) { shutdownGraceBoundsStuckRequests(t, bin) })
	t.Run("silent connections do not hold it", func(t *testing.T) { shutdownClosesSilentConns(t, bin) })
}

// shutdownLosesNothing: streams, a long-poll and a callback in flight at
// SIGTERM; the pending scenes carry on in the next process.
func shutdownLosesNothing(t *testing.T, bin string) {
	const grace = 5 * time.Second
	cs := newChildService(t, bin, map[string]string{"WXLOGIN_SHUTDOWN_GRACE": grace.String()})
	cs.start()

	// Two browsers streaming, one app long-polling, all pending.
	var streams []*sseStream
	var pendingScenes []sceneInfo
	for range 2 {
		sc := createScene(t, cs.URL)
		st, resp := openStream(t, cs.URL, sc.SceneID, sc.Secret, "")
		if st == nil {
			t.Fatalf("open stream: %d", resp.StatusCode)
		}
		if ev := st.Next(t, 5*time.Second); ev.Event != "pending" {
			t.Fatalf("first event %+v", ev)
		}
		streams = append(streams, st)
		pendingScenes = append(pendingScenes, sc)
	}
	polled := createScene(t, cs.URL)
	pendingScenes = append(pendingScenes, polled)
	pollDone := make(chan string, 1)
	go func() {
		var v viewBody
		resp := apiCall(t, http.MethodGet, cs.URL+"/api/v1/login/scenes/"+polled.SceneID+"?wait=30", polled.Secret, nil, &v)
		pollDone <- fmt.Sprintf("%d %s", resp.StatusCode, v.Status)
	}()

	// WeChat is in the middle of sending a scan: headers and half the body.
	scanned := createScene(t, cs.URL)
	const openID = "oShutdown_inflight_000000001"
	cb := startSlowCallback(t, cs, scanned.SceneID, openID)
	time.Sleep(200 * time.Millisecond) // the long-poll and the callback are in the server

	cs.signal(syscall.SIGTERM)
	start := time.Now()
	waitFor(t, 5*time.Second, "the shutdown to begin", func() bool { return cs.logsContain(`"msg":"shutting down"`) })

	// Every stream gets a final retry hint, then ends.
	for i, st := range streams {
		ev := st.NextAny(t, 3*time.Second)
		if ev.Data != "" || ev.Retry == "" {
			t.Errorf("stream %d: last event %+v, want a bare retry hint", i, ev)
		}
		st.WaitClosed(t, 3*time.Second)
	}
	// The long-poll answers now with the current status.
	select {
	case got := <-pollDone:
		if got != "200 pending" {
			t.Errorf("long-poll answered %q, want 200 pending", got)
		}
	case <-time.After(3 * time.Second):
		t.Error("the long-poll was not answered at shutdown")
	}
	// Nothing new is accepted.
	if c, err := net.DialTimeout("tcp", cs.addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts connections during shutdown")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("dial during shutdown: %v", err)
	}
	// The callback in flight finishes, with the login committed and counted.
	reply := cb.finish(t)
	if reply.Status != http.StatusOK || !strings.Contains(reply.Text, "第 1 次") {
		t.Errorf("in-flight callback answered %d %q, want the first-login reply", reply.Status, reply.Text)
	}

	if code := cs.wait(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took := time.Since(start); took > grace {
		t.Errorf("exit took %s, more than the %s grace", took, grace)
	} else {
		t.Logf("exited 0, %s after SIGTERM", took.Round(time.Millisecond))
	}
	if !cs.logsContain(`"msg":"stopped"`) {
		t.Error("no \"stopped\" log line")
	}

	// bbolt was closed: the lock is free, the file is consistent, the
	// login is there and the pending scenes are still pending.
	store := reopenChecked(t, cs.db)
	u, err := store.User(context.Background(), openID)
	if err != nil || u.LoginCount != 1 {
		t.Errorf("user after shutdown: %+v %v", u, err)
	}
	for _, sc := range pendingScenes {
		s, err := store.Scene(context.Background(), sc.SceneID)
		if err != nil || s.Status != "pending" {
			t.Errorf("scene %s after shutdown: %+v %v", sc.SceneID, s, err)
		}
	}
	store.Close()

	// And a new process carries on: a pending stream reconnects and completes.
	cs.start()
	sc := pendingScenes[0]
	st, resp := openStream(t, cs.URL, sc.SceneID, sc.Secret, "1")
	if st == nil {
		t.Fatalf("reconnect after restart: %d", resp.StatusCode)
	}
	if ev := st.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("after restart: %+v", ev)
	}
	sim := &wechat.Simulator{URL: cs.URL + "/wechat/callback", Token: crashToken}
	if r, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, openID, false, time.Now())); err != nil || !strings.Contains(r.Text, "第 2 次") {
		t.Fatalf("scan after restart: %+v %v", r, err)
	}
	if ev := st.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("after the scan: %+v", ev)
	}
}

// shutdownGraceBoundsStuckRequests: a request that never finishes (a
// client that stopped sending its body) cannot hold the process past the
// grace time; it still exits 0 and closes the database.
func shutdownGraceBoundsStuckRequests(t *testing.T, bin string) {
	const grace = time.Second
	cs := newChildService(t, bin, map[string]string{"WXLOGIN_SHUTDOWN_GRACE": grace.String()})
	cs.start()
	sc := createScene(t, cs.URL)
	startSlowCallback(t, cs, sc.SceneID, "oShutdown_stuck_0000000000001") // never finished
	time.Sleep(200 * time.Millisecond)

	code, took := cs.stop(syscall.SIGTERM)
	t.Logf("exit %d after %s with a request stuck", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took < grace || took > grace+3*time.Second {
		t.Errorf("exit after %s; want the %s grace, then at once", took, grace)
	}
	if !cs.logsContain("requests still running at the end of the grace time") {
		t.Error("the cut-off request is not logged")
	}
	reopenChecked(t, cs.db).Close()
}

// shutdownClosesSilentConns: a connection that has sent nothing yet (a
// browser's preconnect, a spare dial in a client's pool) cannot be in
// flight; net/http's Shutdown alone would wait 5 s for it. The shutdown
// closes it and finishes at once.
func shutdownClosesSilentConns(t *testing.T, bin string) {
	const grace = 10 * time.Second
	cs := newChildService(t, bin, map[string]string{"WXLOGIN_SHUTDOWN_GRACE": grace.String()})
	cs.start()
	silent, err := net.Dial("tcp", cs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(300 * time.Millisecond)

	code, took := cs.stop(syscall.SIGTERM)
	t.Logf("exit %d after %s with a silent connection open", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > 2*time.Second {
		t.Errorf("exit after %s: the silent connection held the shutdown", took)
	}
	_ = silent.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Errorf("the silent connection is still open (read %d bytes)", n)
	}
}

// slowCallback is a signed WeChat callback sent over a raw connection, with
// the body held back halfway.
type slowCallback struct {
	conn net.Conn
	rest []byte
	sim  *wechat.Simulator
}

func startSlowCallback(t *testing.T, cs *childService, sceneID, openID string) *slowCallback {
	t.Helper()
	sim := &wechat.Simulator{URL: cs.URL + "/wechat/callback", Token: crashToken}
	req, err := sim.Request(context.Background(), wechat.ScanEvent(sceneID, openID, false, time.Now()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	conn, err := net.Dial("tcp", cs.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	half := len(body) / 2
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		req.URL.RequestURI(), cs.addr, len(body))
	if _, err := conn.Write(append([]byte(head), body[:half]...)); err != nil {
		t.Fatal(err)
	}
	return &slowCallback{conn: conn, rest: body[half:], sim: sim}
}

// finish sends the rest of the body and reads WeChat's answer.
func (s *slowCallback) finish(t *testing.T) wechat.Reply {
	t.Helper()
	_ = s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write(s.rest); err != nil {
		t.Fatalf("finish the callback body: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		t.Fatalf("read the callback's answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// A plain-mode reply is XML with the text inside; the raw body will do.
	return wechat.Reply{Status: resp.StatusCode, Body: string(b), Text: string(b)}
}

// reopenChecked opens the database as the service does (failing fast if
// the file is still locked) and runs bbolt's consistency check.
func reopenChecked(t *testing.T, path string) *storage.Bolt {
	t.Helper()
	store, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatalf("reopen the database: %v", err)
	}
	if err := store.DB().View(checkTx); err != nil {
		t.Errorf("bbolt consistency check: %v", err)
	}
	return store
}

// TestReadinessIgnoresWeChat: WeChat's API failing makes scene creation
// answer 503, but /readyz stays 200 (the specification: a WeChat outage must
// not pull every instance out of the balancer); it shows in the metrics.
func TestReadinessIgnoresWeChat(t *testing.T) {
	srv := startTestServer(t, nil)
	standIn := weChat // the test binary's WeChat (main_test.go)
	standIn.SetFault(wechattest.Fault{HTTPStatus: http.StatusInternalServerError})
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })

	var e errorBody
	if r := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/scenes", "", nil, &e); r.StatusCode != http.StatusServiceUnavailable || e.Error != "wechat_unavailable" {
		t.Fatalf("create with WeChat down: %d %+v", r.StatusCode, e)
	}
	if r := apiCall(t, http.MethodGet, srv.URL+"/readyz", "", nil, nil); r.StatusCode != http.StatusOK {
		t.Errorf("/readyz with WeChat down: %d, want 200", r.StatusCode)
	}
	metrics := func() string {
		r := apiCall(t, http.MethodGet, srv.URL+"/metrics", "", nil, nil)
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	if m := metrics(); !strings.Contains(m, "\nwxlogin_wechat_up 0\n") ||
		!strings.Contains(m, `wxlogin_wechat_api_calls_total{api="qrcode/create",errcode="none"}`) {
		t.Errorf("metrics do not show WeChat down:\n%s", grepLines(m, "wxlogin_wechat"))
	}

	standIn.SetFault(wechattest.Fault{})
	createScene(t, srv.URL)
	if m := metrics(); !strings.Contains(m, "\nwxlogin_wechat_up 1\n") {
		t.Errorf("metrics do not show WeChat back:\n%s", grepLines(m, "wxlogin_wechat"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
