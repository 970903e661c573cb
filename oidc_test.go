package main

// wxlogin as an OpenID provider, driven by relying parties we did not write
// (go-oidc and x/oauth2, see oidc_helpers_test.go) over real HTTP: the code
// flow for confidential and public clients, refusals, logout, key rotation,
// and a flow across instances on Redis.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestOIDCCodeFlow(t *testing.T) {
	srv := startOIDCServer(t, nil)
	const openID = "oOIDC_user_00000000000000001"

	t.Run("confidential client", func(t *testing.T) {
		rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
		b := newBrowser(t)
		a := rp.start()
		q := b.login(rp, a, srv.URL, openID, rpConfidentialURI)
		tok, _, c := rp.finish(t, a, q.Get("code"))

		// sub is /me's id; the claims are the user's.
		session := b.cookie(srv.URL+"/api/v1", "wxl_session")
		var me userBody
		apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", session, nil, &me)
		if c.Subject != me.ID || c.Name != "微信用户" || c.LoginCount != me.LoginCount || me.LoginCount != 1 {
			t.Fatalf("claims %+v, /me %+v", c, me)
		}
		if at := time.Unix(c.AuthTime, 0); time.Since(at) > time.Minute || time.Until(at) > time.Second {
			t.Fatalf("auth_time %v", at)
		}
		info, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		var extra struct {
			Name       string `json:"name"`
			LoginCount int64  `json:"login_count"`
		}
		if err := info.Claims(&extra); err != nil || info.Subject != me.ID || extra.Name != "微信用户" || extra.LoginCount != 1 {
			t.Fatalf("userinfo %+v %+v %v", info, extra, err)
		}

		// The code works once.
		_, err = rp.oauth.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(a.Verifier))
		if code := oauthError(err); code != "invalid_grant" {
			t.Fatalf("second use of the code: %v", err)
		}
		// A wrong secret is invalid_client (and burns nothing it should not:
		// a fresh code from a fresh login is needed anyway).
		bad := *rp.oauth
		bad.ClientSecret = "wrong"
		a2 := rp.start()
		q2 := b.redirected(a2.URL, rpConfidentialURI) // single sign-on: straight back
		if _, err := bad.Exchange(context.Background(), q2.Get("code"), oauth2.VerifierOption(a2.Verifier)); oauthError(err) != "invalid_client" {
			t.Fatalf("wrong secret: %v", err)
		}
	})

	t.Run("public client with PKCE", func(t *testing.T) {
		rp := newRP(t, srv.URL, rpPublicID, "", rpPublicURI)
		b := newBrowser(t)
		a := rp.start()
		q := b.login(rp, a, srv.URL, openID, rpPublicURI)
		// A wrong verifier is refused.
		if _, err := rp.oauth.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthError(err) != "invalid_grant" {
			t.Fatalf("wrong verifier: %v", err)
		}
		a = rp.start()
		q = b.redirected(a.URL, rpPublicURI)
		_, _, c := rp.finish(t, a, q.Get("code"))
		if c.LoginCount != 2 { // the second scan of this WeChat user
			t.Fatalf("login_count %d, want 2", c.LoginCount)
		}
	})

	t.Run("public client without PKCE or with plain", func(t *testing.T) {
		b := newBrowser(t)
		for _, extra := range []string{"", "&code_challenge=abcdefghijabcdefghijabcdefghijabcdefghij123&code_challenge_method=plain"} {
			u := srv.URL + "/authorize?response_type=code&scope=openid&client_id=" + rpPublicID +
				"&redirect_uri=" + url.QueryEscape(rpPublicURI) + "&state=s1" + extra
			q := b.redirected(u, rpPublicURI)
			if q.Get("error") != "invalid_request" || q.Get("state") != "s1" || q.Get("code") != "" {
				t.Fatalf("%q: %v", extra, q)
			}
		}
	})
}

// oauthError is the RFC 6749 error code of a failed token request.
func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestOIDCRefusalsNeverRedirect(t *testing.T) {
	srv := startOIDCServer(t, nil)
	b := newBrowser(t)
	for name, q := range map[string]string{
		"unknown client":             "client_id=nobody&redirect_uri=" + url.QueryEscape(rpConfidentialURI),
		"unregistered redirect_uri":  "client_id=" + rpConfidentialID + "&redirect_uri=" + url.QueryEscape("https://evil.example.com/cb"),
		"redirect_uri with a suffix": "client_id=" + rpConfidentialID + "&redirect_uri=" + url.QueryEscape(rpConfidentialURI+"/x"),
		"no redirect_uri":            "client_id=" + rpConfidentialID,
	} {
		resp, body := b.visit(srv.URL + "/authorize?response_type=code&scope=openid&state=x&" + q)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "无法登录") {
			t.Errorf("%s: %d Location %q %s", name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	// Other errors go back to the client (RFC 6749 §4.1.2.1).
	q := b.redirected(srv.URL+"/authorize?response_type=token&scope=openid&state=x&client_id="+rpConfidentialID+
		"&redirect_uri="+url.QueryEscape(rpConfidentialURI), rpConfidentialURI)
	if q.Get("error") != "unauthorized_client" && q.Get("error") != "unsupported_response_type" {
		t.Errorf("implicit flow: %v", q)
	}
	// The jwt-bearer grant op always routes is refused.
	resp, err := http.PostForm(srv.URL+"/oauth/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion": {"e30.e30.e30"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("jwt-bearer grant: %d", resp.StatusCode)
	}
	// A login page reached from another rpBrowser (no binding cookie) refuses.
	rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	page := b.authorize(rp.start().URL)
	other := newBrowser(t)
	other.scanAndExchange(srv.URL, srv.URL, "oOIDC_other_browser_000000001")
	if resp, body := other.visit(page); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("login page from another rpBrowser: %d %s", resp.StatusCode, body)
	}
}

func TestOIDCSingleSignOnPromptAndMaxAge(t *testing.T) {
	srv := startOIDCServer(t, nil)
	rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	b := newBrowser(t)

	// prompt=none without a session: login_required, no page.
	q := b.redirected(rp.start(oauth2.SetAuthURLParam("prompt", "none")).URL, rpConfidentialURI)
	if q.Get("error") != "login_required" {
		t.Fatalf("prompt=none without a session: %v", q)
	}

	a := rp.start()
	_, _, first := rp.finish(t, a, b.login(rp, a, srv.URL, "oOIDC_sso_user_000000000001", rpConfidentialURI).Get("code"))

	// Single sign-on: straight back with a code, same auth_time.
	a = rp.start()
	_, _, c := rp.finish(t, a, b.redirected(a.URL, rpConfidentialURI).Get("code"))
	if c.AuthTime != first.AuthTime || c.Subject != first.Subject {
		t.Fatalf("SSO claims %+v, first %+v", c, first)
	}
	// prompt=none with a session works too; max_age within the session's age as well.
	for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("max_age", "3600")} {
		a = rp.start(opt)
		rp.finish(t, a, b.redirected(a.URL, rpConfidentialURI).Get("code"))
	}
	time.Sleep(1100 * time.Millisecond) // the session is now over a second old
	// prompt=login and max_age=1 ask for a fresh scan: the login page, then a new auth_time.
	for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "1")} {
		a = rp.start(opt)
		page := b.authorize(a.URL)
		b.scanAndExchange(srv.URL, srv.URL, "oOIDC_sso_user_000000000001")
		_, _, c = rp.finish(t, a, b.redirected(page, rpConfidentialURI).Get("code"))
		if c.AuthTime < first.AuthTime+1 {
			t.Fatalf("auth_time after a fresh scan %d, first %d", c.AuthTime, first.AuthTime)
		}
		time.Sleep(1100 * time.Millisecond)
	}
	// prompt=none with a session older than max_age: login_required.
	q = b.redirected(rp.start(oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("max_age", "1")).URL, rpConfidentialURI)
	if q.Get("error") != "login_required" {
		t.Fatalf("prompt=none beyond max_age: %v", q)
	}
	// Finished requests leave no binding cookie behind (they would pile up).
	pu, _ := url.Parse(srv.URL + "/")
	for _, c := range b.client.Jar.Cookies(pu) {
		if strings.HasPrefix(c.Name, "wxl_oidc_") {
			t.Errorf("cookie %s left after its request finished", c.Name)
		}
	}
}

func TestOIDCLogout(t *testing.T) {
	srv := startOIDCServer(t, nil)
	rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	b := newBrowser(t)
	a := rp.start()
	q := b.login(rp, a, srv.URL, "oOIDC_logout_user_0000000001", rpConfidentialURI)
	_, idToken, _ := rp.finish(t, a, q.Get("code"))
	session := b.cookie(srv.URL+"/api/v1", "wxl_session")

	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := rp.provider.Claims(&disc); err != nil || disc.EndSession == "" {
		t.Fatalf("end_session_endpoint: %q %v", disc.EndSession, err)
	}
	// An unregistered post_logout_redirect_uri is refused and logs nobody out.
	resp, _ := b.visit(disc.EndSession + "?" + url.Values{"id_token_hint": {idToken},
		"post_logout_redirect_uri": {"https://evil.example.com/"}}.Encode())
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unregistered post_logout_redirect_uri: %d", resp.StatusCode)
	}
	if r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", session, nil, nil); r.StatusCode != 200 {
		t.Fatalf("session ended by a refused logout: %d", r.StatusCode)
	}

	q = b.redirected(disc.EndSession+"?"+url.Values{"id_token_hint": {idToken}, "state": {"bye"},
		"post_logout_redirect_uri": {rpLoggedOutURI}}.Encode(), rpLoggedOutURI)
	if q.Get("state") != "bye" {
		t.Fatalf("after logout: %v", q)
	}
	if r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", session, nil, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me after logout: %d", r.StatusCode)
	}
	if b.cookie(srv.URL+"/api/v1", "wxl_session") != "" {
		t.Fatal("the session cookie is still in the rpBrowser")
	}
	q = b.redirected(rp.start(oauth2.SetAuthURLParam("prompt", "none")).URL, rpConfidentialURI)
	if q.Get("error") != "login_required" {
		t.Fatalf("prompt=none after logout: %v", q)
	}
	// A forged next address on the logout page is not followed.
	resp, _ = b.visit(srv.URL + "/api/v1/oidc/logout?next=" + url.QueryEscape("https://evil.example.com/") + "&sig=forged")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Fatalf("forged logout next: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// jwks returns the key ids the server publishes.
func jwks(t testing.TB, base string) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if r := apiCall(t, http.MethodGet, base+"/keys", "", nil, &set); r.StatusCode != 200 {
		t.Fatalf("/keys: %d", r.StatusCode)
	}
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.Kid)
	}
	return ids
}

func TestOIDCKeysSurviveRestartAndRotate(t *testing.T) {
	db := filepath.Join(t.TempDir(), "wxlogin.db")
	addr := freeLoopbackAddr(t)
	clients := writeClientFile(t)
	env := map[string]string{"WXLOGIN_ADDR": addr, "WXLOGIN_PUBLIC_URL": "http://" + addr, "WXLOGIN_DB": db,
		"WXLOGIN_OIDC_CLIENTS": clients}
	srv := startTestServer(t, env)
	before := jwks(t, srv.URL)
	rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	b := newBrowser(t)
	a := rp.start()
	_, idToken, _ := rp.finish(t, a, b.login(rp, a, srv.URL, "oOIDC_restart_user_000000001", rpConfidentialURI).Get("code"))
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	srv = startTestServer(t, env)
	if after := jwks(t, srv.URL); len(before) != 1 || strings.Join(after, ",") != before[0] {
		t.Fatalf("keys before %v, after the restart %v", before, after)
	}
	rp = newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	if _, err := rp.verifier.Verify(context.Background(), idToken); err != nil {
		t.Fatalf("an ID token from before the restart: %v", err)
	}
	// The session survived too: single sign-on after the restart.
	a = rp.start()
	rp.finish(t, a, b.redirected(a.URL, rpConfidentialURI).Get("code"))
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Rotation (server stopped: bbolt is locked while it runs).
	var out syncBuffer
	if err := dispatch(context.Background(), []string{"oidc", "rotate-keys"}, func(k string) string { return env[k] }, &out, &out); err != nil {
		t.Fatalf("rotate-keys: %v\n%s", err, out.String())
	}
	srv = startTestServer(t, env)
	after := jwks(t, srv.URL)
	if len(after) != 2 || after[1] != before[0] || !strings.Contains(out.String(), after[0]) {
		t.Fatalf("after rotation %v (before %v): %s", after, before, out.String())
	}
	rp = newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	if _, err := rp.verifier.Verify(context.Background(), idToken); err != nil {
		t.Fatalf("a token signed with the old key after rotation: %v", err)
	}
	a = rp.start()
	_, fresh, _ := rp.finish(t, a, b.redirected(a.URL, rpConfidentialURI).Get("code"))
	if kid := jwtKeyID(t, fresh); kid != after[0] {
		t.Fatalf("signed with %q, want the new key %q", kid, after[0])
	}
}

func jwtKeyID(t testing.TB, jwt string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	seg, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil || json.Unmarshal(seg, &h) != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return h.Kid
}

func TestOIDCClientFileErrorsStopTheStart(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), []string{"WXLOGIN_OIDC_CLIENTS", "nope.json"}},
		{"not JSON", write("bad.json", "{"), []string{"bad.json", "JSON"}},
		{"duplicate", write("dup.json", `[{"client_id":"a","redirect_uris":["https://a/cb"]},{"client_id":"a","redirect_uris":["https://b/cb"]}]`),
			[]string{"dup.json", `entry 2 (client_id "a")`, "duplicate"}},
		{"relative redirect", write("rel.json", `[{"client_id":"a","client_secret":"s","redirect_uris":["/cb"]}]`),
			[]string{"rel.json", `entry 1 (client_id "a")`, `"/cb"`, "absolute"}},
	} {
		addr := freeLoopbackAddr(t)
		env := map[string]string{"WXLOGIN_ADDR": addr, "WXLOGIN_PUBLIC_URL": "http://" + addr,
			"WXLOGIN_DB": filepath.Join(t.TempDir(), "db"), "WECHAT_TOKEN": "t", "WXLOGIN_OIDC_CLIENTS": tc.path}
		var out syncBuffer
		err := run(context.Background(), nil, func(k string) string { return env[k] }, &out)
		if err == nil {
			t.Fatalf("%s: the start went on", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
	// The issuer is required, and https outside loopback.
	for _, publicURL := range []string{"", "http://login.example.com"} {
		env := map[string]string{"WXLOGIN_ADDR": "127.0.0.1:0", "WXLOGIN_PUBLIC_URL": publicURL,
			"WXLOGIN_OIDC_CLIENTS": writeClientFile(t), "WECHAT_TOKEN": "t"}
		if _, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "WXLOGIN_PUBLIC_URL") {
			t.Errorf("WXLOGIN_PUBLIC_URL=%q: %v", publicURL, err)
		}
	}
}

// TestOIDCClusterStepsOnTwoInstances runs one flow across two instances on
// Redis: authorize on A, the scene and the exchange on B, the scan on A's
// webhook, the login page on B, the token and the JWKS on B, userinfo on A,
// logout on B. Keys, auth requests, codes and sessions are shared.
func TestOIDCClusterStepsOnTwoInstances(t *testing.T) {
	prefix := newClusterPrefix(t, clusterRedis)
	addrA := freeLoopbackAddr(t)
	issuer := "http://" + addrA
	env := map[string]string{
		"WXLOGIN_REDIS_URL": clusterRedis, "WXLOGIN_REDIS_PREFIX": prefix, "WXLOGIN_SCENE_RATE": "0",
		"WXLOGIN_PUBLIC_URL": issuer, "WXLOGIN_OIDC_CLIENTS": writeClientFile(t),
	}
	envA := map[string]string{"WXLOGIN_ADDR": addrA}
	for k, v := range env {
		envA[k] = v
	}
	a := startTestServer(t, envA)
	b := startTestServer(t, env)
	if got, want := jwks(t, b.URL), jwks(t, a.URL); len(want) != 1 || strings.Join(got, ",") != want[0] {
		t.Fatalf("JWKS on B %v, on A %v", got, want)
	}

	rp := newRP(t, issuer, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	onB := *rp.oauth
	onB.Endpoint.TokenURL = b.URL + "/oauth/token"
	verifierB := gooidc.NewVerifier(issuer, gooidc.NewRemoteKeySet(context.Background(), b.URL+"/keys"),
		&gooidc.Config{ClientID: rpConfidentialID})

	br := newBrowser(t)
	req := rp.start()
	page := br.authorize(req.URL) // on A
	br.scanAndExchange(b.URL, a.URL, "oOIDC_cluster_user_000000001")
	pageOnB := strings.Replace(page, issuer, b.URL, 1)
	q := br.redirected(pageOnB, rpConfidentialURI)
	if q.Get("state") != req.State {
		t.Fatalf("back at the client: %v", q)
	}
	tok, err := onB.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(req.Verifier))
	if err != nil {
		t.Fatalf("token on B: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := verifierB.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("verify with B's JWKS: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil || c.Nonce != req.Nonce || c.LoginCount != 1 {
		t.Fatalf("claims %+v %v", c, err)
	}
	info, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok)) // on A
	if err != nil || info.Subject != c.Subject {
		t.Fatalf("userinfo on A: %+v %v", info, err)
	}
	// The code was used on B: A refuses it.
	if _, err := rp.oauth.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(req.Verifier)); oauthError(err) != "invalid_grant" {
		t.Fatalf("the code again on A: %v", err)
	}
	// Single sign-on through B's login page for a request made on A.
	req = rp.start()
	resp, _ := br.visit(req.URL)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), rpConfidentialURI) {
		t.Fatalf("SSO on A after a login through B: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Rotation while the cluster runs (Redis): both instances publish the
	// new key at once, beside the old one.
	var out syncBuffer
	if err := dispatch(context.Background(), []string{"oidc", "rotate-keys"}, func(k string) string { return env[k] }, &out, &out); err != nil {
		t.Fatalf("rotate-keys on Redis: %v\n%s", err, out.String())
	}
	for _, node := range []*testServer{a, b} {
		if keys := jwks(t, node.URL); len(keys) != 2 || !strings.Contains(out.String(), keys[0]) {
			t.Fatalf("JWKS on %s after rotation: %v (%s)", node.URL, keys, out.String())
		}
	}
	// Logout on B ends the session everywhere.
	session := br.cookie(a.URL+"/api/v1", "wxl_session")
	br.redirected(b.URL+"/end_session?"+url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {rpLoggedOutURI}}.Encode(), rpLoggedOutURI)
	if r := apiCall(t, http.MethodGet, a.URL+"/api/v1/me", session, nil, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me on A after logout on B: %d", r.StatusCode)
	}
}

func TestOIDCTokenRequestTooLarge(t *testing.T) {
	srv := startOIDCServer(t, nil)
	body := url.Values{"grant_type": {"authorization_code"}, "code": {strings.Repeat("x", 20<<10)}}.Encode()
	resp, err := http.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 20 KiB token request: %d", resp.StatusCode)
	}
}

// TestOIDCStartsWhileRedisIsDown: like the rest of wxlogin, the provider
// does not stop the start when Redis does not answer; its keys are made and
// read once Redis is back, and the flow works without a restart.
func TestOIDCStartsWhileRedisIsDown(t *testing.T) {
	r := startRedisServer(t)
	r.stop(t)
	srv := startOIDCServer(t, map[string]string{"WXLOGIN_REDIS_URL": r.url()})
	if resp := apiCall(t, http.MethodGet, srv.URL+"/keys", "", nil, nil); resp.StatusCode < 500 {
		t.Fatalf("/keys with Redis down: %d", resp.StatusCode)
	}
	r.start(t)
	waitFor(t, 10*time.Second, "JWKS once Redis answers", func() bool {
		return apiCall(t, http.MethodGet, srv.URL+"/keys", "", nil, nil).StatusCode == http.StatusOK
	})
	rp := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	b := newBrowser(t)
	a := rp.start()
	rp.finish(t, a, b.login(rp, a, srv.URL, "oOIDC_redis_late_user_00000001", rpConfidentialURI).Get("code"))
}
