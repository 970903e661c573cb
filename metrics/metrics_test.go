package metrics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"wxlogin/events"
	"wxlogin/handlers"
	"wxlogin/login"
	"wxlogin/metrics"
	"wxlogin/storage"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

const callbackToken = "metrics-test-token"

// service is the real service (bbolt, hub, handlers, webhook) with the
// metrics wired in as wire.go does, and WeChat's API played by a stand-in.
type service struct {
	URL     string
	standIn *wechattest.WeChat
	sim     *wechat.Simulator
	logs    *lockedBuffer
}

// sharedStandIn plays WeChat's API for every test of this package:
// silenceper's HTTP client is process-wide, so TestMain points it at this
// one WeChat, served over real HTTP.
var sharedStandIn = wechattest.New()

func TestMain(m *testing.M) {
	srv := httptest.NewServer(sharedStandIn)
	wechat.SetHTTPClient(wechat.RedirectClient(srv.URL, 4*time.Second))
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

func startService(t *testing.T) *service {
	t.Helper()
	m := metrics.New()
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "wxlogin.db"), storage.WithTimings(m.ObserveStorage))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	hub := events.NewHub(events.WithLogger(log))

	client := wechat.NewClient(wechat.Config{AppID: "wxmetricstest", AppSecret: "s", Token: callbackToken,
		Observe: m.ObserveWeChat}, log)
	svc := login.NewService(m.Store(store), m.Notifier(hub), client, login.WithLogger(log))
	cb := wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: callbackToken, Log: log, Observe: m.ObserveCallback})

	e := handlers.New(svc, m.Streams(hub), handlers.Config{
		Callback:   cb,
		Metrics:    m.Handler(),
		Middleware: []echo.MiddlewareFunc{metrics.AccessLog(log), m.Middleware()},
		Log:        log,
	})
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Drain(ctx)
		srv.Close()
		hub.Close()
		store.Close()
	})
	return &service{
		URL:     srv.URL,
		standIn: sharedStandIn,
		sim:     &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: callbackToken},
		logs:    logs,
	}
}

// TestMetricsFollowALogin drives logins over real HTTP and reads /metrics
// after each step.
func TestMetricsFollowALogin(t *testing.T) {
	s := startService(t)
	s.standIn.SetFault(wechattest.Fault{})

	// Scene created: one token fetch, one qrcode/create.
	a := s.createScene(t)
	s.expect(t, map[string]float64{
		`wxlogin_scenes_total{event="created"}`:                           1,
		`wxlogin_wechat_api_calls_total{api="token",errcode="0"}`:         1,
		`wxlogin_wechat_api_calls_total{api="qrcode/create",errcode="0"}`: 1,
		`wxlogin_wechat_up`:            1,
		`wxlogin_open_streams`:         0,
		`wxlogin_long_polls_in_flight`: 0,
	})

	// An open stream counts while it is open.
	stream := s.openStream(t, a)
	if ev := stream.next(t); ev != "pending" {
		t.Fatalf("first event %q, want pending", ev)
	}
	s.expect(t, map[string]float64{`wxlogin_open_streams`: 1})

	// A long-poll counts while it waits.
	b := s.createScene(t)
	polled := make(chan string, 1)
	go func() { polled <- s.longPoll(b) }()
	s.eventually(t, `wxlogin_long_polls_in_flight`, 1)

	// Scan a: the stream ends with confirmed, the callback is counted.
	ev := wechat.ScanEvent(a.SceneID, "oMetrics_user_a_000000000001", false, time.Now())
	if r, err := s.sim.Send(context.Background(), ev); err != nil || r.Status != http.StatusOK || r.Text == "" {
		t.Fatalf("scan: %+v %v", r, err)
	}
	if ev := stream.next(t); ev != "confirmed" {
		t.Fatalf("stream event %q, want confirmed", ev)
	}
	s.eventually(t, `wxlogin_open_streams`, 0)
	s.expect(t, map[string]float64{`wxlogin_stream_duration_seconds_count`: 1})
	// WeChat retries the same message: a duplicate, counted as such.
	if r, err := s.sim.Send(context.Background(), ev); err != nil || r.Status != http.StatusOK {
		t.Fatalf("retry: %+v %v", r, err)
	}
	// Scan b: the long-poll answers.
	if _, err := s.sim.Send(context.Background(), wechat.ScanEvent(b.SceneID, "oMetrics_user_b_000000000001", true, time.Now())); err != nil {
		t.Fatal(err)
	}
	if st := <-polled; st != "confirmed" {
		t.Fatalf("long-poll answered %q", st)
	}
	// A forged callback.
	req, _ := http.NewRequest(http.MethodPost, s.sim.URL+"?signature=0000000000000000000000000000000000000000&timestamp=1&nonce=n", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	s.expect(t, map[string]float64{
		`wxlogin_scenes_total{event="confirmed"}`:                              2,
		`wxlogin_long_polls_in_flight`:                                         0,
		`wxlogin_wechat_callbacks_total{event="scan",result="confirmed"}`:      1,
		`wxlogin_wechat_callbacks_total{event="scan",result="duplicate"}`:      1,
		`wxlogin_wechat_callbacks_total{event="subscribe",result="confirmed"}`: 1,
		`wxlogin_wechat_callbacks_total{event="none",result="bad_signature"}`:  1,
	})

	// WeChat's quota runs out: an errcode with an empty errmsg.
	s.standIn.SetFault(wechattest.Fault{QRErrCode: wechat.ErrCodeQuota})
	r := s.post(t, "/api/v1/login/scenes", "")
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("create with quota gone: %d", r.StatusCode)
	}
	s.standIn.SetFault(wechattest.Fault{})
	text := s.expect(t, map[string]float64{
		`wxlogin_wechat_api_calls_total{api="qrcode/create",errcode="45009"}`: 1,
		`wxlogin_wechat_up`:                     0,
		`wxlogin_scenes_total{event="created"}`: 2,
	})

	// Durations by route pattern, never for the stream, never a raw path.
	for _, want := range []string{
		`wxlogin_http_request_duration_seconds_count{code="201",method="POST",route="/api/v1/login/scenes"} 2`,
		`wxlogin_http_request_duration_seconds_count{code="503",method="POST",route="/api/v1/login/scenes"} 1`,
		`wxlogin_http_request_duration_seconds_count{code="200",method="POST",route="/wechat/callback"} 3`,
		`wxlogin_http_request_duration_seconds_count{code="403",method="POST",route="/wechat/callback"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(text, metrics.StreamRoute) || strings.Contains(text, a.SceneID) {
		t.Errorf("the stream route or a raw path is in the duration metric")
	}

	// The store's disk: every write above waited for a journal sync (two
	// scenes and two scans at least), and a checkpoint follows within 0.5 s.
	if n, _ := valueOf(text, `wxlogin_bbolt_seconds_count{phase="journal_sync"}`); n < 4 {
		t.Errorf("journal syncs observed: %v, want at least 4", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := valueOf(text, `wxlogin_bbolt_seconds_count{phase="checkpoint"}`); n < 1; n, _ = valueOf(s.scrape(t), `wxlogin_bbolt_seconds_count{phase="checkpoint"}`) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint observed within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAccessLog checks one JSON line per request, with a request id, the
// path and never the query (WeChat's signature).
func TestAccessLog(t *testing.T) {
	s := startService(t)
	s.standIn.SetFault(wechattest.Fault{})
	a := s.createScene(t)
	if _, err := s.sim.Send(context.Background(), wechat.ScanEvent(a.SceneID, "oMetrics_user_log_0000000001", false, time.Now())); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/healthz?secret=do-not-log", nil)
	req.Header.Set(metrics.RequestIDHeader, "upstream-id-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(metrics.RequestIDHeader); got != "upstream-id-42" {
		t.Errorf("X-Request-ID answered %q, want the one sent", got)
	}

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON log line: %q", sc.Text())
		}
		if l["msg"] == "request" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d request lines, want 3 (create, callback, healthz):\n%s", len(lines), s.logs.String())
	}
	ids := map[any]bool{}
	for _, l := range lines {
		if id, _ := l["request_id"].(string); id == "" {
			t.Errorf("no request_id: %v", l)
		}
		ids[l["request_id"]] = true
	}
	if len(ids) != 3 {
		t.Errorf("request ids are not distinct: %v", ids)
	}
	cb := lines[1]
	if cb["path"] != "/wechat/callback" || cb["route"] != "/wechat/callback" || cb["status"] != float64(200) {
		t.Errorf("callback line: %v", cb)
	}
	if lines[2]["request_id"] != "upstream-id-42" {
		t.Errorf("upstream request id not kept: %v", lines[2])
	}
	for _, leak := range []string{"signature", "nonce", "do-not-log", a.Secret} {
		if strings.Contains(s.logs.String(), leak) {
			t.Errorf("the log contains %q", leak)
		}
	}
}

type sceneCreated struct {
	SceneID string `json:"scene_id"`
	Secret  string `json:"secret"`
}

func (s *service) post(t *testing.T, path, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp
}

func (s *service) createScene(t *testing.T) sceneCreated {
	t.Helper()
	resp := s.post(t, "/api/v1/login/scenes", "")
	var sc sceneCreated
	if err := json.NewDecoder(resp.Body).Decode(&sc); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create scene: %d %v", resp.StatusCode, err)
	}
	return sc
}

// longPoll waits up to 10 s for the scene's status to change and returns it.
func (s *service) longPoll(sc sceneCreated) string {
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/login/scenes/"+sc.SceneID+"?wait=10", nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var v struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.Status
}

type eventStream struct {
	events chan string
}

func (s *service) openStream(t *testing.T, sc sceneCreated) *eventStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/login/scenes/"+sc.SceneID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %v %v", resp, err)
	}
	es := &eventStream{events: make(chan string, 8)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(es.events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				es.events <- ev
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close(); <-done })
	return es
}

func (es *eventStream) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-es.events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return ""
	}
}

// scrape reads /metrics.
func (s *service) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// expect checks series values in one scrape and returns the scrape.
func (s *service) expect(t *testing.T, want map[string]float64) string {
	t.Helper()
	text := s.scrape(t)
	for series, v := range want {
		got, ok := valueOf(text, series)
		if !ok {
			t.Errorf("%s is missing", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	return text
}

// eventually waits for a gauge to reach v: the handler's deferred
// bookkeeping runs just after the client has its answer.
func (s *service) eventually(t *testing.T, series string, v float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := valueOf(s.scrape(t), series)
		if got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", series, got, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func valueOf(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
