package main

// Shared helpers for the end-to-end tests of package main: the service started
// through run, as a user would, on a random loopback port (alone or as a
// cluster over Redis), the JSON API it answers, and what it leaves behind in
// its metrics and its database. The other helper files: stream_helpers_test.go
// (SSE and polling clients), wechat_helpers_test.go (WeChat's side of the
// callback), process_helpers_test.go (the built binary as a child process),
// browser_helpers_test.go (Chromium) and oidc_helpers_test.go (a relying party).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"wxlogin/internal/redistest"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
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

const testAdminToken = "admin-token-for-tests-0123456789abcdef"

// loginAs runs one whole login of openID on srv (scene, signed scan, poll,
// code exchange) and returns the session.
func loginAs(t *testing.T, srv *testServer, openID string) tokenBody {
	t.Helper()
	sc := createScene(t, srv.URL)
	reply, err := (&wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: "test-callback-token", AppID: demoAppID}).
		Send(context.Background(), wechat.ScanEvent(sc.SceneID, openID, false, time.Now()))
	if err != nil || !strings.Contains(reply.Text, "登录成功") {
		t.Fatalf("scan: %+v, %v", reply, err)
	}
	var v viewBody
	if r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v); r.StatusCode != 200 || v.Code == "" {
		t.Fatalf("poll: %d %+v", r.StatusCode, v)
	}
	var tok tokenBody
	if r := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok); r.StatusCode != 200 {
		t.Fatalf("exchange: %d", r.StatusCode)
	}
	return tok
}

const (
	clusterRedis = "redis://127.0.0.1:6379/0"
	clusterToken = testToken // startTestServer's WECHAT_TOKEN, shared by all instances
)

// newClusterPrefix returns a Redis key prefix for one test and removes its
// keys when the test ends (after the instances have stopped: cleanups run in
// reverse order). It fails, never skips, when Redis does not answer.
func newClusterPrefix(t *testing.T, redisURL string) string {
	t.Helper()
	return redistest.Prefix(t, redistest.Client(t, redisURL))
}

// startCluster runs n instances on one Redis prefix, each on its own port
// (and an unused bbolt path of its own).
func startCluster(t *testing.T, n int, redisURL, prefix string, extra map[string]string) []*testServer {
	t.Helper()
	env := map[string]string{
		"WXLOGIN_REDIS_URL":          redisURL,
		"WXLOGIN_REDIS_PREFIX":       prefix,
		"WECHAT_TOKEN":               clusterToken,
		"WXLOGIN_SCENE_RATE":         "0",
		"WXLOGIN_MAX_STREAMS_PER_IP": "0",
	}
	for k, v := range extra {
		env[k] = v
	}
	servers := make([]*testServer, n)
	for i := range servers {
		servers[i] = startTestServer(t, env)
	}
	return servers
}

// statusView is the poll answer and every event's data.
type statusView struct {
	SceneID string `json:"scene_id"`
	Status  string `json:"status"`
	Code    string `json:"code"`
	User    *struct {
		ID         string `json:"id"`
		LoginCount int    `json:"login_count"`
	} `json:"user"`
}

func decodeView(t testing.TB, data string) statusView {
	t.Helper()
	var v statusView
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return v
}

// metricsText is an instance's /metrics page.
func metricsText(t testing.TB, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s/metrics: %v", base, err)
	}
	return string(b)
}

// metricSample finds one sample (a series with its labels, as written) on
// an instance's /metrics; ok is false when the series is not there.
func metricSample(t testing.TB, base, series string) (value float64, ok bool) {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, base), "\n") {
		if v, found := strings.CutPrefix(line, series+" "); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f, true
		}
	}
	return 0, false
}

// metricValue reads one sample from an instance's /metrics; the series must be there.
func metricValue(t testing.TB, base, name string) float64 {
	t.Helper()
	v, ok := metricSample(t, base, name)
	if !ok {
		t.Fatalf("metric %s not found on %s", name, base)
	}
	return v
}

// metricOrZero reads one sample from /metrics; 0 when the series is not there yet.
func metricOrZero(t testing.TB, base, series string) float64 {
	t.Helper()
	v, _ := metricSample(t, base, series)
	return v
}

// labelledMetric is metricOrZero under the name the code-login tests use.
func labelledMetric(t testing.TB, base, series string) float64 {
	t.Helper()
	return metricOrZero(t, base, series)
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exchange(t testing.TB, base, sceneID, secret, code string) (*http.Response, map[string]any) {
	t.Helper()
	var out map[string]any
	resp := apiCall(t, http.MethodPost, base+"/api/v1/login/token", secret,
		map[string]string{"scene_id": sceneID, "code": code}, &out)
	return resp, out
}

// with returns a copy of env with k set to v.
func with(env map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range env {
		if key != k {
			out[key] = val
		}
	}
	return out
}

const (
	testLinkKey   = "0123456789abcdef0123456789abcdef-test-link-key"
	testPublicURL = "https://login.example.test"
)

var confirmLinkRE = regexp.MustCompile(regexp.QuoteMeta(testPublicURL) + `(/confirm\?t=[A-Za-z0-9_.-]+)`)

func confirmEnv(t *testing.T) map[string]string {
	return map[string]string{
		"WXLOGIN_DB":              filepath.Join(t.TempDir(), "wxlogin.db"),
		"WXLOGIN_CONFIRM":         "link",
		"WXLOGIN_PUBLIC_URL":      testPublicURL,
		"WXLOGIN_LINK_KEY":        testLinkKey,
		"WXLOGIN_TRUSTED_PROXIES": "127.0.0.1",
	}
}

// confirmPageAt fetches or posts the confirm page; form may be nil (GET).
func confirmPageAt(t *testing.T, base, path string, form url.Values) (int, http.Header, string) {
	t.Helper()
	var req *http.Request
	if form == nil {
		req, _ = http.NewRequest(http.MethodGet, base+path, nil)
	} else {
		req, _ = http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("confirm page: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func decision(d string) url.Values { return url.Values{"decision": {d}} }

// checkTx is bbolt's consistency check as a View function.
func checkTx(tx *bolt.Tx) error {
	var errs []error
	for err := range tx.Check() {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

type viewBody struct {
	SceneID  string `json:"scene_id"`
	Status   string `json:"status"`
	Interval int    `json:"interval"`
	Code     string `json:"code"`
	User     *struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		LoginCount int64  `json:"login_count"`
	} `json:"user"`
}

type userBody struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	LoginCount   int64  `json:"login_count"`
	FirstLoginAt string `json:"first_login_at"`
	LastLoginAt  string `json:"last_login_at"`
}

type tokenBody struct {
	AccessToken string   `json:"access_token"`
	TokenType   string   `json:"token_type"`
	ExpiresIn   int      `json:"expires_in"`
	User        userBody `json:"user"`
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func readAll(r *http.Response) (string, error) {
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

// secView is the poll answer.
type secView struct {
	SceneID string `json:"scene_id"`
	Status  string `json:"status"`
	Code    string `json:"code"`
	User    *struct {
		LoginCount int64 `json:"login_count"`
	} `json:"user"`
}

// secToken is the token exchange answer.
type secToken struct {
	AccessToken string `json:"access_token"`
	User        struct {
		LoginCount int64 `json:"login_count"`
	} `json:"user"`
}

// secError is the API's error shape.
type secError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// createSceneFrom creates a scene as a browser with user agent ua behind a
// proxy that says the client is xff ("" = no X-Forwarded-For).
func createSceneFrom(t *testing.T, base, xff, ua string) sceneInfo {
	t.Helper()
	resp, body := createSceneRaw(t, base, xff, ua)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create scene: %d %s", resp.StatusCode, body)
	}
	var s sceneInfo
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func createSceneRaw(t *testing.T, base, xff, ua string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/login/scenes", nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create scene: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// storeDump is every record of a bbolt file: bucket → key → value.
type storeDump map[string]map[string]string

// storeAfterStop stops srv (its cleanup then finds it stopped) and reads its
// database file.
func storeAfterStop(t *testing.T, srv *testServer, dbPath string) storeDump {
	t.Helper()
	err := srv.Stop()
	srv.done <- err // Stop may be called again at cleanup: give it the same answer
	if err != nil {
		t.Fatalf("stop server: %v", err)
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", dbPath, err)
	}
	defer db.Close()
	return dumpBolt(t, db)
}

// dumpStore checkpoints a live store's journal into bbolt and dumps the file.
func dumpStore(t *testing.T, store *storage.Bolt) storeDump {
	t.Helper()
	if err := store.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	return dumpBolt(t, store.DB())
}

func dumpBolt(t *testing.T, db *bolt.DB) storeDump {
	t.Helper()
	d := storeDump{}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			d[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d storeDump) user(t *testing.T, openID string) *login.User {
	t.Helper()
	raw, ok := d["users"][openID]
	if !ok {
		return nil
	}
	var u login.User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		t.Fatal(err)
	}
	return &u
}

func (d storeDump) scene(t *testing.T, id string) *login.Scene {
	t.Helper()
	raw, ok := d["scenes"][id]
	if !ok {
		t.Fatalf("scene %s not in storage", id)
	}
	var s login.Scene
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// sameAs fails the test where after differs from d.
func (d storeDump) sameAs(t *testing.T, after storeDump) {
	t.Helper()
	for _, pair := range [][2]storeDump{{d, after}, {after, d}} {
		for bucket, m := range pair[0] {
			for k, v := range m {
				if w, ok := pair[1][bucket][k]; !ok || w != v {
					t.Errorf("storage changed: bucket %s key %q: %q vs %q", bucket, k, v, w)
				}
			}
		}
	}
}

// codeScene is the answer to POST /login/scenes with the code method on.
type codeScene struct {
	sceneInfo
	Methods     []string `json:"methods"`
	LoginCode   string   `json:"login_code"`
	FollowQR    string   `json:"follow_qr"`
	AccountName string   `json:"account_name"`
}

func createCodeScene(t testing.TB, base string) codeScene {
	t.Helper()
	var s codeScene
	if r := apiCall(t, http.MethodPost, base+"/api/v1/login/scenes", "", nil, &s); r.StatusCode != http.StatusCreated {
		t.Fatalf("create scene: %d", r.StatusCode)
	}
	if c, ok := login.ParseLoginCode(s.LoginCode); !ok || c != s.LoginCode {
		t.Fatalf("login_code %q has not the code's shape", s.LoginCode)
	}
	return s
}
