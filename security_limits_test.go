package main

// Limits a client meets: JSON bodies over 4 KiB, scene creation per client
// IP, open streams and long-polls per client IP, and WeChat's own quota, each
// refused in the JSON error shape. Per-client limits key IPv6 clients by
// their /64 (IPv4 clients by address), and a wrong method under /api/v1 is
// 405 with Allow and the JSON error shape.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// TestIPv6ClientsLimitedBy64: one /64 shares one scene-creation bucket and
// one stream cap, whichever of its addresses it uses; another /64, or
// another IPv4 address, has its own.
func TestIPv6ClientsLimitedBy64(t *testing.T) {
	srv := startTestServer(t, map[string]string{
		"WXLOGIN_SCENE_RATE": "3", "WXLOGIN_TRUSTED_PROXIES": "127.0.0.1",
		"WXLOGIN_MAX_STREAMS_PER_IP": "2",
	})
	for i, step := range []rateStep{
		{"2001:db8:1:2::1", true}, {"2001:db8:1:2::2", true}, {"2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::4", false}, // the same /64: its bucket is empty
		{"2001:db8:1:3::1", true},  // the next /64
		{"203.0.113.1", true}, {"203.0.113.1", true}, {"203.0.113.1", true},
		{"203.0.113.1", false}, {"203.0.113.2", true}, // IPv4: per address
	} {
		resp, body := createSceneRaw(t, srv.URL, step.xff, "")
		if got := resp.StatusCode == http.StatusCreated; got != step.admitted {
			t.Fatalf("scene %d from %s: %d %s, want admitted=%v", i, step.xff, resp.StatusCode, body, step.admitted)
		}
	}

	sc := createSceneFrom(t, srv.URL, "2001:db8:7::1", "")
	stream := func(xff string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+sc.Secret)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			t.Cleanup(func() { resp.Body.Close() })
		} else {
			resp.Body.Close()
		}
		return resp.StatusCode
	}
	for i, step := range []struct {
		xff    string
		status int
	}{
		{"2001:db8:5:6::a", http.StatusOK},
		{"2001:db8:5:6::b", http.StatusOK},
		{"2001:db8:5:6::c", http.StatusTooManyRequests}, // a third stream from the same /64
		{"2001:db8:5:7::a", http.StatusOK},
	} {
		if got := stream(step.xff); got != step.status {
			t.Fatalf("stream %d from %s: %d, want %d", i, step.xff, got, step.status)
		}
	}
}

// TestWrongMethodUnderAPI: a known API path with the wrong method is 405
// with Allow and the JSON error; an unknown path is still 404.
func TestWrongMethodUnderAPI(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	for _, tc := range []struct {
		method, path, allow string
		status              int
	}{
		{http.MethodGet, "/api/v1/login/token", "POST", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/me", "GET", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/logout", "POST", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/api/v1/login/scenes/" + sc.SceneID, "GET", http.StatusMethodNotAllowed},
		{http.MethodPut, "/api/v1/login/scenes", "POST", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/login/scenes/" + sc.SceneID + "/events", "GET", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/no/such/thing", "", http.StatusNotFound},
		{http.MethodPost, "/api/v1/no/such/thing", "", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e secError
		_ = json.Unmarshal(raw, &e)
		wantCode := map[int]string{405: "method_not_allowed", 404: "not_found"}[tc.status]
		if resp.StatusCode != tc.status || e.Error != wantCode || e.Message == "" {
			t.Errorf("%s %s: %d %s, want %d with error %q", tc.method, tc.path, resp.StatusCode, raw, tc.status, wantCode)
			continue
		}
		allow := resp.Header.Get("Allow")
		if tc.allow != "" && !strings.Contains(allow, tc.allow) || tc.allow == "" && allow != "" {
			t.Errorf("%s %s: Allow %q, want it to name %q", tc.method, tc.path, allow, tc.allow)
		}
	}
}

// TestJSONBodyLimit: JSON bodies over 4 KiB are 413 in the error shape,
// whether the length is announced or not, and change nothing.
func TestJSONBodyLimit(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	r, err := secSimulator(srv, "").Send(t.Context(), wechat.ScanEvent(sc.SceneID, "oBODY_00000000000000000000001", false, time.Now()))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan: %v %d", err, r.Status)
	}
	code := login.CodeFor(sc.Secret, sc.SceneID)
	big, _ := json.Marshal(map[string]string{"scene_id": sc.SceneID, "code": code, "pad": strings.Repeat("x", 5<<10)})
	for _, path := range []string{"/api/v1/login/token", "/api/v1/dev/scan"} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = io.MultiReader(bytes.NewReader(big)) // no length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+sc.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e secError
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(raw, &e)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error != "too_large" || e.Message == "" {
				t.Errorf("%s chunked=%v: %d %s", path, chunked, resp.StatusCode, raw)
			}
		}
	}
	// The code was not used by the refused requests.
	var tok secToken
	if resp := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret,
		map[string]string{"scene_id": sc.SceneID, "code": code}, &tok); resp.StatusCode != http.StatusOK || tok.User.LoginCount != 1 {
		t.Fatalf("exchange after the refusals: %d %+v", resp.StatusCode, tok)
	}
}

// TestSceneRateLimit: scene creation is a token bucket per client IP; the IP
// comes from X-Forwarded-For only when the peer is a trusted proxy. A refused
// creation stores nothing.
func TestSceneRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		trusted string
		// xff of each request, and whether it is admitted
		steps     []rateStep
		wantIPs   map[string]int // scenes stored per client IP
		forwarded bool
	}{
		{
			name:    "no trusted proxies: X-Forwarded-For is ignored",
			trusted: "",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.2", true}, {"203.0.113.3", true},
				{"203.0.113.4", false}, {"", false}},
			wantIPs: map[string]int{"127.0.0.1": 3},
		},
		{
			name:    "peer is not a trusted proxy: ignored",
			trusted: "10.9.9.9",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.2", true}, {"203.0.113.3", true},
				{"203.0.113.4", false}},
			wantIPs: map[string]int{"127.0.0.1": 3},
		},
		{
			name:    "trusted proxy: one bucket per forwarded client",
			trusted: "127.0.0.1",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.1", true}, {"203.0.113.1", true},
				{"203.0.113.1", false},
				// A client cannot pick its address by prepending one: the
				// proxy appends the real peer, and that is what counts.
				{"198.51.100.77, 203.0.113.1", false},
				{"203.0.113.2", true}},
			wantIPs: map[string]int{"203.0.113.1": 3, "203.0.113.2": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db"),
				"WXLOGIN_SCENE_RATE": "3", "WXLOGIN_TRUSTED_PROXIES": tt.trusted}
			srv := startTestServer(t, env)
			for i, s := range tt.steps {
				resp, body := createSceneRaw(t, srv.URL, s.xff, "")
				if s.admitted {
					if resp.StatusCode != http.StatusCreated {
						t.Fatalf("step %d (%s): %d %s", i, s.xff, resp.StatusCode, body)
					}
					continue
				}
				var e secError
				_ = json.Unmarshal(body, &e)
				ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusTooManyRequests || e.Error != "rate_limited" || ra < 1 || ra > 20 {
					t.Fatalf("step %d (%s): %d Retry-After %q %s", i, s.xff, resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
			}
			st := storeAfterStop(t, srv, env["WXLOGIN_DB"])
			got := map[string]int{}
			for id := range st["scenes"] {
				got[st.scene(t, id).ClientIP]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantIPs) {
				t.Fatalf("scenes stored per IP: %v, want %v", got, tt.wantIPs)
			}
		})
	}
}

type rateStep struct {
	xff      string
	admitted bool
}

// TestStreamCaps: open streams and long-polls are capped per client IP (429)
// and in total (503); a closed stream frees its slot.
func TestStreamCaps(t *testing.T) {
	srv := startTestServer(t, map[string]string{
		"WXLOGIN_MAX_STREAMS": "3", "WXLOGIN_MAX_STREAMS_PER_IP": "2", "WXLOGIN_TRUSTED_PROXIES": "127.0.0.1",
	})
	sc := createScene(t, srv.URL)
	// get opens a stream (or a long-poll) as client xff. An open stream is
	// returned with its body to close; a refusal is read and closed.
	get := func(path, xff string) (*http.Response, secError) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+path, nil)
		req.Header.Set("Authorization", "Bearer "+sc.Secret)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e secError
		if resp.StatusCode == http.StatusOK {
			t.Cleanup(func() { resp.Body.Close() })
			return resp, e
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		return resp, e
	}
	stream := func(xff string) (*http.Response, secError) { return get("/events", xff) }
	refused := func(resp *http.Response, e secError, status int, code string) {
		t.Helper()
		if resp.StatusCode != status || e.Error != code || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("want %d %s with Retry-After, got %d %+v Retry-After %q", status, code, resp.StatusCode, e, resp.Header.Get("Retry-After"))
		}
	}

	a1, _ := stream("203.0.113.1")
	if a2, _ := stream("203.0.113.1"); a1.StatusCode != http.StatusOK || a2.StatusCode != http.StatusOK {
		t.Fatal("the first two streams of one IP were refused")
	}
	resp, e := stream("203.0.113.1")
	refused(resp, e, http.StatusTooManyRequests, "too_many_streams")
	resp, e = get("?wait=5", "203.0.113.1") // a long-poll counts as a stream
	refused(resp, e, http.StatusTooManyRequests, "too_many_streams")

	if b1, _ := stream("203.0.113.2"); b1.StatusCode != http.StatusOK {
		t.Fatal("another IP's first stream was refused")
	}
	resp, e = stream("203.0.113.3")
	refused(resp, e, http.StatusServiceUnavailable, "unavailable")

	a1.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := stream("203.0.113.3")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not free its slot: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWeChatQuota: WeChat's quota error (45009) is 503 wechat_quota for every
// request, and logged once, not per request.
func TestWeChatQuota(t *testing.T) {
	standIn := weChat // the test binary's WeChat (wechat_helpers_test.go)
	standIn.SetFault(wechattest.Fault{QRErrCode: wechat.ErrCodeQuota, QRErrMsg: "reach max api daily quota limit"})
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })

	env := map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db")}
	srv := startTestServer(t, env)
	for range 5 {
		resp, body := createSceneRaw(t, srv.URL, "", "")
		var e secError
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusServiceUnavailable || e.Error != "wechat_quota" || !strings.Contains(e.Message, "45009") {
			t.Fatalf("create under quota: %d %s", resp.StatusCode, body)
		}
	}
	if n := strings.Count(srv.Logs.String(), "45009"); n != 1 {
		t.Errorf("the quota error was logged %d times for 5 requests, want once:\n%s", n, srv.Logs.String())
	}
	if st := storeAfterStop(t, srv, env["WXLOGIN_DB"]); len(st["scenes"]) != 0 {
		t.Errorf("%d scenes stored without a QR code", len(st["scenes"]))
	}
}
