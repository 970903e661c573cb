package main

// What the service tells no one: secrets never reach the logs, pages carry
// headers that keep them from being framed or loading foreign scripts, and a
// WECHAT_AES_KEY that cannot be one stops the start. The attacks themselves
// are in security_callback_test.go (the WeChat callback), security_limits_test.go
// (rate limits, caps and body sizes), security_body_test.go (slow bodies),
// security_confirm_test.go (the confirm link) and security_metrics_test.go.

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// --- helpers shared with confirm_test.go -----------------------------------

// --- 1 and 2: safe mode, signatures, freshness ------------------------------

// --- 3: limits ---------------------------------------------------------------

// --- 5: secrets and headers ---------------------------------------------------

var standInTokenRE = regexp.MustCompile(`standin-[A-Za-z0-9_-]{24}`)

// TestSecretsNeverLogged runs a production-mode server (WeChat's API is the
// stand-in) through a login, failures and refusals, and then looks for every
// secret in its logs and error answers.
func TestSecretsNeverLogged(t *testing.T) {
	standIn := weChat // the test binary's WeChat (wechat_helpers_test.go)
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })
	const appSecret = "APPSECRET-must-never-be-logged-7f3a9c"
	const cbToken = "CALLBACKTOKEN-never-logged-91be"
	env := map[string]string{
		"WECHAT_APPID": "wxsecrettest000001", "WECHAT_APPSECRET": appSecret,
		"WECHAT_TOKEN": cbToken, "WECHAT_AES_KEY": testAESKey,
	}
	srv := startTestServer(t, env)
	sim := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: cbToken, AppID: "wxsecrettest000001", AESKey: testAESKey}
	var secrets []string
	var answers []string
	call := func(method, path, bearer string, body any, out any) *http.Response {
		resp := apiCall(t, method, srv.URL+path, bearer, body, out)
		if resp.StatusCode >= 400 { // error answers only: the others carry secrets by design
			b, _ := io.ReadAll(resp.Body)
			answers = append(answers, string(b))
		}
		return resp
	}

	sc := createScene(t, srv.URL)
	secrets = append(secrets, sc.Secret)
	if r, err := sim.Send(t.Context(), wechat.ScanEvent(sc.SceneID, "oSECRET_0000000000000000000001", false, time.Now())); err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan: %v %d", err, r.Status)
	}
	var v secView
	call(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v)
	secrets = append(secrets, v.Code)
	call(http.MethodPost, "/api/v1/login/token", "wrong-secret", map[string]string{"scene_id": sc.SceneID, "code": v.Code}, nil)
	var tok secToken
	call(http.MethodPost, "/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok)
	call(http.MethodPost, "/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, nil) // reused code
	secrets = append(secrets, tok.AccessToken)
	call(http.MethodGet, "/api/v1/me", tok.AccessToken, nil, nil)
	call(http.MethodPost, "/api/v1/logout", tok.AccessToken, nil, nil)
	call(http.MethodGet, "/api/v1/me", tok.AccessToken, nil, nil)
	// Forged and stale callbacks.
	stale, _ := sim.Request(t.Context(), wechat.ScanEvent(sc.SceneID, "oX", false, time.Now()), time.Now().Add(-time.Hour))
	sim.Do(stale)
	// WeChat failing in the ways that put URLs (with access_token=) into errors.
	for _, f := range []wechattest.Fault{{HTTPStatus: http.StatusBadGateway}, {QRErrCode: 40013, QRErrMsg: "invalid appid"},
		{QRErrCode: wechat.ErrCodeQuota, QRErrMsg: "quota"}, {RejectTokens: true}} {
		standIn.SetFault(f)
		call(http.MethodPost, "/api/v1/login/scenes", "", nil, nil)
	}
	standIn.SetFault(wechattest.Fault{})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv.done <- nil

	logs := srv.Logs.String()
	if !strings.Contains(logs, "REDACTED") {
		t.Errorf("no scrubbed WeChat error in the logs: the failures above did not exercise Scrub:\n%s", logs)
	}
	for _, where := range []struct{ name, text string }{{"logs", logs}, {"answers", strings.Join(answers, "\n")}} {
		for _, s := range append(secrets, appSecret, cbToken, testAESKey) {
			if s != "" && strings.Contains(where.text, s) {
				t.Errorf("%s contain the secret %q", where.name, s)
			}
		}
		if m := standInTokenRE.FindString(where.text); m != "" {
			t.Errorf("%s contain an access token %q", where.name, m)
		}
		for _, m := range regexp.MustCompile(`access_token=[^&\s"]*`).FindAllString(where.text, -1) {
			if m != "access_token=REDACTED" {
				t.Errorf("%s contain %q", where.name, m)
			}
		}
	}
}

// TestSecurityHeaders: the page may not be framed and runs only our own
// scripts; every answer says nosniff.
func TestSecurityHeaders(t *testing.T) {
	srv := startTestServer(t, nil)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("page CSP allows inline code: %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q", resp.Header.Get("X-Frame-Options"))
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/login/scenes"},
		{http.MethodGet, "/api/v1/login/scenes/nope"},
		{http.MethodGet, "/api/v1/me"},
		{http.MethodPost, "/wechat/callback"},
		{http.MethodGet, "/"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q", tc.method, tc.path, resp.Header.Get("X-Content-Type-Options"))
		}
	}
}

// TestAESKeyValidated: a WECHAT_AES_KEY that cannot be an EncodingAESKey
// stops the start (it would refuse every safe-mode message) and names itself.
func TestAESKeyValidated(t *testing.T) {
	for key, ok := range map[string]bool{
		testAESKey:              true,
		strings.Repeat("!", 43): false, // 43 characters, not base64
		testAESKey[:42]:         false,
		testAESKey + "A":        false,
		testAESKey[:42] + "=":   false,
	} {
		env := map[string]string{"WECHAT_AES_KEY": key, "WXLOGIN_ADDR": "127.0.0.1:0"}
		_, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "WECHAT_AES_KEY")) {
			t.Errorf("WECHAT_AES_KEY=%q: %v", key, err)
		}
	}
}
