package main

// Shared helpers for the end-to-end tests of package main: they start the
// real service through run, as a user would, on a random loopback port.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// testServer is one running instance started by startTestServer.
type testServer struct {
	URL  string // http://127.0.0.1:port
	Logs *syncBuffer
	stop context.CancelFunc
	done chan error

	stopOnce sync.Once
	stopErr  error
}

// Stop shuts the instance down gracefully and returns run's error. Calling
// it again returns the same result.
func (s *testServer) Stop() error {
	s.stopOnce.Do(func() {
		s.stop()
		select {
		case s.stopErr = <-s.done:
		case <-time.After(30 * time.Second):
			s.stopErr = fmt.Errorf("run did not return within 30 s of shutdown")
		}
	})
	return s.stopErr
}

// weChat plays WeChat's API for every service this test binary starts, in
// demo and production mode alike. silenceper's HTTP client is process-wide,
// so TestMain chooses it once, as main does for the binary; tests that need
// a misbehaving WeChat set its faults (and heal it when they end).
var weChat = wechattest.New()

func TestMain(m *testing.M) {
	wechat.SetHTTPClient(wechat.InProcessClient(weChat, wechatTimeout))
	os.Exit(m.Run())
}

// startTestServer runs the service with env (on top of a loopback address
// and a fresh database) and waits until it listens. It stops at cleanup.
func startTestServer(t testing.TB, env map[string]string) *testServer {
	t.Helper()
	full := map[string]string{
		"WXLOGIN_ADDR":   "127.0.0.1:0",
		"WXLOGIN_DB":     filepath.Join(t.TempDir(), "wxlogin.db"),
		"WECHAT_TOKEN":   "test-callback-token",
		"WXLOGIN_DEMO":   "",
		"WXLOGIN_QR_TTL": "120s",
	}
	for k, v := range env {
		full[k] = v
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{Logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, nil, func(k string) string { return full[k] }, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if u := logs.listenURL(); u != "" {
			s.URL = u
			t.Cleanup(func() {
				if err := s.Stop(); err != nil {
					t.Errorf("stop server: %v", err)
				}
			})
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("run failed: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("server did not start within 10 s:\n%s", logs.String())
	return nil
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) listenURL() string {
	for _, line := range strings.Split(b.String(), "\n") {
		if u, ok := strings.CutPrefix(line, "wxlogin listening on "); ok {
			return strings.TrimSpace(u)
		}
	}
	return ""
}

// sceneInfo is the answer to POST /api/v1/login/scenes.
type sceneInfo struct {
	SceneID   string `json:"scene_id"`
	Secret    string `json:"secret"`
	Status    string `json:"status"`
	QRURL     string `json:"qr_url"`
	QRImage   string `json:"qr_image"`
	ExpiresAt string `json:"expires_at"`
	ExpiresIn int    `json:"expires_in"`
	Interval  int    `json:"interval"`
	EventsURL string `json:"events_url"`
	StatusURL string `json:"status_url"`
}

// apiCall does one JSON request and decodes the answer into out (if not nil).
func apiCall(t testing.TB, method, url, bearer string, body any, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, raw, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp
}

func createScene(t testing.TB, base string) sceneInfo {
	t.Helper()
	var s sceneInfo
	resp := apiCall(t, http.MethodPost, base+"/api/v1/login/scenes", "", nil, &s)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create scene: status %d", resp.StatusCode)
	}
	return s
}

// sseEvent is one parsed server-sent event (Data is empty for a bare retry hint).
type sseEvent = ssetest.Event

// sseStream is a real SSE client reading one stream.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
}

// openStream connects to a scene's event stream with the secret as Bearer.
func openStream(t testing.TB, base, sceneID, secret, lastEventID string) (*sseStream, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/login/scenes/"+sceneID+"/events", nil)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp
	}
	s := &sseStream{resp: resp, events: make(chan sseEvent, 16), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return s, resp
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.events)
	rd := ssetest.NewReader(s.resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			return
		}
		s.events <- ev
	}
}

// Next returns the next event carrying data, or fails after timeout.
func (s *sseStream) Next(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended while waiting for an event")
			}
			if ev.Data == "" {
				continue // a bare retry hint
			}
			return ev
		case <-time.After(timeout):
			t.Fatalf("no event within %s", timeout)
		}
	}
}

// WaitClosed fails unless the server ends the stream within timeout.
func (s *sseStream) WaitClosed(t testing.TB, timeout time.Duration) {
	t.Helper()
	timer := time.After(timeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timer:
			t.Fatalf("stream still open after %s", timeout)
		}
	}
}

func (s *sseStream) Close() {
	s.resp.Body.Close()
	<-s.done
}
