package main

// A request body must arrive whole within
// WXLOGIN_BODY_TIMEOUT; a body sent a byte at a time no longer holds its
// connection for ever. The webhook checks its query before it reads a byte
// of the body. Streams and long-polls, which have no body, keep working
// beyond the deadline.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxlogin/wechat"
)

// trickled is what became of a request whose body was sent slowly.
type trickled struct {
	status int           // the answer's status; 0 if the server closed without one
	after  time.Duration // from the head being sent to the answer or the close
	sent   int           // body bytes sent by then
}

// trickle sends head (announcing a body of bodyLen bytes), then the body one
// byte every gap, until the server answers or closes, or giveUp passes.
func trickle(t *testing.T, base, head string, bodyLen int, gap, giveUp time.Duration) (trickled, bool) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	tick := time.NewTicker(gap)
	defer tick.Stop()
	sent := 0
	for {
		select {
		case status := <-answered:
			return trickled{status: status, after: time.Since(start), sent: sent}, true
		case <-tick.C:
			if time.Since(start) > giveUp {
				return trickled{sent: sent}, false
			}
			if sent < bodyLen {
				if _, err := conn.Write([]byte("x")); err == nil {
					sent++
				}
			}
		}
	}
}

func postHead(path string, bodyLen int, contentType string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: wxlogin.test\r\nContent-Type: " + contentType +
		"\r\nContent-Length: " + itoa(int64(bodyLen)) + "\r\n\r\n"
}

func TestSlowBodiesAreCut(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_BODY_TIMEOUT": "1s"})
	signed := "/wechat/callback?" + signedCallbackQuery(time.Now().Unix(), "slow-nonce").Encode()
	for _, tc := range []struct {
		name, path, contentType string
		status                  int // 0: any answer, as long as it comes in time
	}{
		{"token exchange", "/api/v1/login/token", "application/json", http.StatusRequestTimeout},
		{"signed callback", signed, "text/xml", http.StatusRequestTimeout},
		// Scene creation reads no body; net/http still waits for it before
		// answering (so the connection can be reused), now bounded too.
		{"scene creation", "/api/v1/login/scenes", "application/json", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 200 bytes at one every 100 ms would take 20 s.
			got, ok := trickle(t, srv.URL, postHead(tc.path, 200, tc.contentType), 200, 100*time.Millisecond, 6*time.Second)
			if !ok {
				t.Fatalf("a body trickling for 6 s still holds its connection (%d bytes sent)", got.sent)
			}
			if got.after < 900*time.Millisecond || got.after > 4*time.Second || (tc.status != 0 && got.status != 0 && got.status != tc.status) {
				t.Fatalf("cut after %s with status %d, want %d (or a close) after about 1 s", got.after, got.status, tc.status)
			}
		})
	}

	t.Run("unsigned callback is refused before its body", func(t *testing.T) {
		// No body byte is ever sent: the 403 must not wait for one.
		got, ok := trickle(t, srv.URL, postHead("/wechat/callback?signature=x&timestamp=1&nonce=1", 200, "text/xml"), 0, 50*time.Millisecond, 3*time.Second)
		if !ok || got.status != http.StatusForbidden || got.after > 800*time.Millisecond {
			t.Fatalf("unsigned callback with a body that never comes: %+v (answered %v), want 403 at once", got, ok)
		}
	})
}

// TestBodyDeadlineSparesStreams: with a 1 s body deadline a long-poll waits
// its 3 s and an SSE stream open for 2.5 s still delivers the login.
func TestBodyDeadlineSparesStreams(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_BODY_TIMEOUT": "1s"})
	sc := createScene(t, srv.URL)
	start := time.Now()
	var v statusView
	r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+"?wait=3", sc.Secret, nil, &v)
	if r.StatusCode != http.StatusOK || v.Status != "pending" || time.Since(start) < 2500*time.Millisecond {
		t.Fatalf("long-poll: %d %+v after %s", r.StatusCode, v, time.Since(start))
	}

	s, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	if s == nil {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	if ev := s.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("first event %+v", ev)
	}
	time.Sleep(2500 * time.Millisecond) // longer than the body deadline
	if r, err := simulatorFor(srv).Send(t.Context(), wechat.ScanEvent(sc.SceneID, wechat.RandomOpenID(), false, time.Now())); err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan: %v %+v", err, r)
	}
	if ev := s.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("event after the deadline: %+v", ev)
	}
}

func TestBodyTimeoutSetting(t *testing.T) {
	for _, v := range []string{"abc", "0s", "-1s"} {
		env := map[string]string{"WXLOGIN_BODY_TIMEOUT": v, "WXLOGIN_ADDR": "127.0.0.1:0"}
		_, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "WXLOGIN_BODY_TIMEOUT") {
			t.Errorf("WXLOGIN_BODY_TIMEOUT=%q: %v", v, err)
		}
	}
	env := map[string]string{"WXLOGIN_ADDR": "127.0.0.1:0"}
	cfg, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.BodyTimeout != 10*time.Second {
		t.Fatalf("default body timeout: %v %v", cfg, err)
	}
}
