package main

// The confirm page's POST is refused when the browser says
// it comes from another site (Sec-Fetch-Site, or else Origin).

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxlogin/wechat"
)

func TestConfirmPostFromOtherSiteRefused(t *testing.T) {
	srv := startTestServer(t, confirmEnv(t))
	sim := secSimulator(srv, "")
	sc := createScene(t, srv.URL)
	link, _ := scanForLink(t, sim, wechat.ScanEvent(sc.SceneID, wechat.RandomOpenID(), false, time.Now()))

	post := func(headers map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+link, strings.NewReader(url.Values{"decision": {"confirm"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := readAll(resp)
		return resp.StatusCode, b
	}
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "https://other.login.example.test"},
		{"Sec-Fetch-Site": "cross-site", "Origin": testPublicURL}, // Sec-Fetch-Site decides
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://login.example.test"}, // another scheme is another origin
	} {
		if status, body := post(h); status != http.StatusForbidden || !strings.Contains(body, "Open from WeChat") {
			t.Errorf("POST with %v: %d, want 403", h, status)
		}
	}
	if v := pollScene(t, srv.URL, sc); v.Status != "scanned" {
		t.Fatalf("after refused posts the scene is %s, want scanned", v.Status)
	}
	if status, _, body := confirmPageAt(t, srv.URL, link, nil); status != http.StatusOK || !strings.Contains(body, `method="post"`) {
		t.Fatalf("after refused posts the page no longer asks: %d", status)
	}
	// The page itself posts same-origin.
	if status, body := post(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": testPublicURL}); status != http.StatusOK || !strings.Contains(body, "登录成功") {
		t.Fatalf("POST from the page: %d %s", status, body)
	}
}

// TestConfirmPostOriginOnly: a browser that sends Origin but no
// Sec-Fetch-Site is let through from the public origin.
func TestConfirmPostOriginOnly(t *testing.T) {
	srv := startTestServer(t, confirmEnv(t))
	sc := createScene(t, srv.URL)
	link, _ := scanForLink(t, secSimulator(srv, ""), wechat.ScanEvent(sc.SceneID, wechat.RandomOpenID(), false, time.Now()))
	req, _ := http.NewRequest(http.MethodPost, srv.URL+link, strings.NewReader("decision=deny"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", testPublicURL)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST with the public origin: %d", resp.StatusCode)
	}
	if v := pollScene(t, srv.URL, sc); v.Status != "denied" {
		t.Fatalf("scene %s, want denied", v.Status)
	}
}
