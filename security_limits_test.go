package main

// Issue 13, items 5 and 6: per-client limits key IPv6 clients by their /64
// (IPv4 clients by address), and a wrong method under /api/v1 is 405 with
// Allow and the JSON error shape.

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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
