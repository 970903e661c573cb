package main

// Shared helpers for the OpenID Connect tests: a service started as an
// OpenID provider with registered clients, and a relying party (an
// oauth2.Config plus a cookie-keeping browser) that logs in through it.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"wxlogin/internal/random"
	"wxlogin/wechat"
)

// The relying parties of these tests: go-oidc and x/oauth2, which we did not
// write, over real HTTP against servers started through run. Their redirect
// URIs are never fetched: the test's rpBrowser stops at them and hands the
// code to the relying party.
const (
	rpConfidentialID     = "grafana"
	rpConfidentialSecret = "grafana-secret-0123456789"
	rpConfidentialURI    = "https://grafana.example.com/login/generic_oauth"
	rpPublicID           = "spa"
	rpPublicURI          = "http://127.0.0.1:5173/callback"
	rpLoggedOutURI       = "https://grafana.example.com/logged-out"
)

// writeClientFile writes a client file with a confidential and a public client.
func writeClientFile(t testing.TB) string {
	t.Helper()
	clients := []map[string]any{
		{"client_id": rpConfidentialID, "client_secret": rpConfidentialSecret, "name": "Grafana",
			"redirect_uris": []string{rpConfidentialURI}, "post_logout_redirect_uris": []string{rpLoggedOutURI}},
		{"client_id": rpPublicID, "name": "Single page app", "redirect_uris": []string{rpPublicURI}},
	}
	raw, err := json.Marshal(clients)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startOIDCServer runs an instance whose issuer is its own address, with the
// test clients registered.
func startOIDCServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	addr := freeLoopbackAddr(t)
	full := map[string]string{
		"WXLOGIN_ADDR":         addr,
		"WXLOGIN_PUBLIC_URL":   "http://" + addr,
		"WXLOGIN_OIDC_CLIENTS": writeClientFile(t),
		"WXLOGIN_SCENE_RATE":   "0",
	}
	for k, v := range env {
		full[k] = v
	}
	return startTestServer(t, full)
}

// rp is a relying party: go-oidc's provider (discovery, JWKS) and an
// oauth2.Config for one client.
type rp struct {
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	oauth    *oauth2.Config
}

func newRP(t testing.TB, issuer, clientID, secret, redirect string) *rp {
	t.Helper()
	p, err := gooidc.NewProvider(context.Background(), issuer) // checks that discovery's issuer is exactly issuer
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	cfg := &oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: redirect,
		Endpoint: p.Endpoint(), Scopes: []string{gooidc.ScopeOpenID, "profile"}}
	if secret != "" {
		cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	} else {
		cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return &rp{provider: p, verifier: p.Verifier(&gooidc.Config{ClientID: clientID}), oauth: cfg}
}

// authRequest is one login the relying party started.
type authRequest struct {
	URL, State, Nonce, Verifier string
}

func (r *rp) start(opts ...oauth2.AuthCodeOption) authRequest {
	a := authRequest{State: random.String(16), Nonce: random.String(16), Verifier: oauth2.GenerateVerifier()}
	opts = append(opts, gooidc.Nonce(a.Nonce), oauth2.S256ChallengeOption(a.Verifier))
	a.URL = r.oauth.AuthCodeURL(a.State, opts...)
	return a
}

// idClaims are the ID token's claims the SPEC fixes.
type idClaims struct {
	Subject    string `json:"sub"`
	Name       string `json:"name"`
	LoginCount int64  `json:"login_count"`
	AuthTime   int64  `json:"auth_time"`
	Nonce      string `json:"nonce"`
}

// finish exchanges the code and verifies the ID token (signature, iss, aud,
// expiry by go-oidc; the nonce here, as go-oidc leaves that to its caller).
func (r *rp) finish(t testing.TB, a authRequest, code string) (*oauth2.Token, string, idClaims) {
	t.Helper()
	tok, err := r.oauth.Exchange(context.Background(), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatalf("token exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Nonce != a.Nonce {
		t.Fatalf("nonce %q, want %q", c.Nonce, a.Nonce)
	}
	return tok, raw, c
}

// rpBrowser is a person's browser: a cookie jar, redirects followed except to
// a relying party's redirect URI, where it stops and reports the address.
type rpBrowser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *rpBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), "http://127.0.0.1:") || strings.HasPrefix(req.URL.String(), rpPublicURI) {
			return http.ErrUseLastResponse // a relying party's address: stop here
		}
		return nil
	}
	return &rpBrowser{t: t, client: c}
}

// visit GETs u following wxlogin's redirects and returns the last answer
// with its body.
func (b *rpBrowser) visit(u string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// authorize visits the authorization URL and expects the login page.
func (b *rpBrowser) authorize(u string) string {
	b.t.Helper()
	resp, body := b.visit(u)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/api/v1/oidc/login/") {
		b.t.Fatalf("authorize: want the login page, got %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	return resp.Request.URL.String()
}

// redirected visits u and expects to be sent to a relying party; it returns
// that address's query.
func (b *rpBrowser) redirected(u, to string) url.Values {
	b.t.Helper()
	resp, body := b.visit(u)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, to) {
		b.t.Fatalf("want a redirect to %s, got %d Location %q: %s", to, resp.StatusCode, loc, body)
	}
	l, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return l.Query()
}

// scanAndExchange does what the login page's script does, with the scan
// sent as WeChat's signed callback to scanAt: a scene, the scan, the code
// exchange that leaves the session cookie in the jar. It returns the
// session token.
func (b *rpBrowser) scanAndExchange(base, scanAt, openID string) string {
	b.t.Helper()
	var sc sceneInfo
	b.post(base+"/api/v1/login/scenes", nil, &sc, http.StatusCreated)
	sim := &wechat.Simulator{URL: scanAt + "/wechat/callback", Token: "test-callback-token", AppID: demoAppID}
	reply, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, openID, false, time.Now()))
	if err != nil || reply.Status != http.StatusOK {
		b.t.Fatalf("scan: %+v %v", reply, err)
	}
	var v viewBody
	if r := apiCall(b.t, http.MethodGet, base+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v); r.StatusCode != 200 || v.Code == "" {
		b.t.Fatalf("after the scan: %d %+v", r.StatusCode, v)
	}
	var tok tokenBody
	b.post(base+"/api/v1/login/token", map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok, http.StatusOK)
	return tok.AccessToken
}

func (b *rpBrowser) post(u string, body any, out any, want int) {
	b.t.Helper()
	var rd io.Reader = strings.NewReader("")
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(http.MethodPost, u, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.t.Fatalf("POST %s: %d %s", u, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatal(err)
		}
	}
}

// login runs a whole first login for the relying party and returns the
// code it got.
func (b *rpBrowser) login(r *rp, a authRequest, base, openID, redirect string) url.Values {
	b.t.Helper()
	page := b.authorize(a.URL)
	b.scanAndExchange(base, base, openID)
	q := b.redirected(page, redirect)
	if q.Get("state") != a.State || q.Get("code") == "" {
		b.t.Fatalf("back at the client: %v", q)
	}
	return q
}

func (b *rpBrowser) cookie(u, name string) string {
	pu, _ := url.Parse(u)
	for _, c := range b.client.Jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}
