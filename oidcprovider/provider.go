// Package oidcprovider makes wxlogin an OpenID Provider: zitadel/oidc's
// certified `op` package speaks the protocol; this package keeps its state in
// wxlogin's store (bbolt or Redis), and its login step is wxlogin's own QR
// page. The login package knows nothing of it.
//
// Construction: New takes one Config struct and checks it.
package oidcprovider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"wxlogin/internal/iplimit"
	"wxlogin/login"
)

// ScopeUnionID asks for the unionid claim: the person's id across the apps
// of one WeChat Open Platform account, given when wxlogin knows it.
const ScopeUnionID = "unionid"

// DemoClientID is the public client demo mode registers; its redirect URI is
// DemoPath on wxlogin itself.
const (
	DemoClientID = "demo"
	DemoPath     = "/oidc/demo"
)

// Paths of wxlogin's own pages in the flow. They are under /api/v1 because
// the session cookie (wxl_session, set by handlers at the code exchange) is
// scoped there: only these paths can see whether the browser is logged in.
const (
	loginPath  = "/api/v1/oidc/login/"
	logoutPath = "/api/v1/oidc/logout"
	// sessionCookie is handlers' session cookie, read here for single sign-on
	// and cleared at logout (same name and path as handlers sets it).
	sessionCookie     = "wxl_session"
	sessionCookiePath = "/api/v1"
	// bindCookiePrefix + request id holds a MAC of the id, set on the browser
	// that called /authorize: only that browser can finish the request.
	bindCookiePrefix = "wxl_oidc_"
)

// Config is what the provider needs.
type Config struct {
	Issuer  string // WXLOGIN_PUBLIC_URL
	Clients []ClientConfig
	// DemoPage is the demo page (static's index.html); the login page is made from it.
	DemoPage []byte
	Records  Records
	Users    Users
	// EndSession ends a wxlogin session by its token (login.Service.Logout).
	EndSession func(ctx context.Context, token string) error
	// AuthorizeRate is new authorization requests per minute per client
	// address (burst the same); 0 = unlimited.
	AuthorizeRate int
	// AllowInsecureIssuer accepts an http issuer beyond loopback (demo mode
	// only: never for real logins).
	AllowInsecureIssuer bool
	// KeysAtFirstUse defers making (or reading) the keys from the start to
	// the first request that needs them. Demo mode does: most demo runs (and
	// tests) never use OpenID Connect, and an RSA key costs a CPU burst.
	KeysAtFirstUse bool
	Log            *slog.Logger
	Now            func() time.Time
}

// Provider is the OpenID Provider mounted beside wxlogin's routes.
type Provider struct {
	cfg     Config
	op      *op.Provider
	store   *store
	secrets *secrets
	secure  bool
	clients map[string]*client
	// limiter bounds new authorization requests per client: each one is a
	// stored record for 30 minutes, so an unbounded flood would fill the store.
	limiter   *iplimit.Limiter
	loginPage *template.Template
}

// DemoClient is the client demo mode registers for issuer: public (PKCE in
// the browser), redirecting to wxlogin's own relying-party page.
func DemoClient(issuer string) ClientConfig {
	page := strings.TrimRight(issuer, "/") + DemoPath
	return ClientConfig{ClientID: DemoClientID, Name: "wxlogin OIDC demo", RedirectURIs: []string{page},
		PostLogoutRedirectURIs: []string{page}}
}

// New reads (or makes, at the first start) the signing keys and builds the provider.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || (iss.Scheme != "http" && iss.Scheme != "https") || iss.Host == "" {
		return nil, fmt.Errorf("OIDC issuer %q: want an absolute http(s) URL (WXLOGIN_PUBLIC_URL)", cfg.Issuer)
	}
	insecure := iss.Scheme == "http"
	if insecure && !loopbackHost(iss.Hostname()) && !cfg.AllowInsecureIssuer {
		return nil, fmt.Errorf("OIDC issuer %q: https is required outside loopback (WXLOGIN_PUBLIC_URL)", cfg.Issuer)
	}
	loginPage, err := loginPageTemplate(cfg.DemoPage)
	if err != nil {
		return nil, fmt.Errorf("OIDC login page: %w", err)
	}
	p := &Provider{cfg: cfg, secure: !insecure, clients: map[string]*client{}, limiter: iplimit.New(cfg.AuthorizeRate),
		loginPage: loginPage, secrets: &secrets{records: cfg.Records, now: cfg.Now}}
	// The keys are made now at the first start; a store that does not answer
	// yet (Redis down) only delays that to the first request that needs them.
	if !cfg.KeysAtFirstUse {
		loadCtx, cancel := context.WithTimeout(ctx, loadTimeout)
		err = p.secrets.load(loadCtx)
		cancel()
		if err != nil && login.ErrorCode(err) != login.EUNAVAILABLE {
			return nil, fmt.Errorf("OIDC keys: %w", err)
		}
		if err != nil {
			cfg.Log.Warn("OIDC keys not loaded yet: the store does not answer; OpenID Connect requests fail until it does", "err", err)
		}
	}
	for _, c := range cfg.Clients {
		p.clients[c.ClientID] = newClient(c, p.loginURL)
	}
	p.store = &store{records: cfg.Records, users: cfg.Users, clients: p.clients, now: cfg.Now,
		keys: &keyRing{records: cfg.Records, now: cfg.Now, ensure: p.secrets.load}}

	opCfg := &op.Config{
		CodeMethodS256:  true,
		AuthMethodPost:  true,
		SupportedScopes: []string{oidc.ScopeOpenID, oidc.ScopeProfile, ScopeUnionID},
		SupportedClaims: []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "azp", "at_hash", "c_hash",
			"name", "login_count", "unionid"},
	}
	// op.WithLogger is a no-op in op v3.52: see LogRouter (oplog.go).
	opts := []op.Option{op.WithCORSOptions(p.corsOptions()), op.WithCrypto(p.secrets)}
	if insecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	provider, err := op.NewProvider(opCfg, &sessionEnder{p.store, p}, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("OIDC provider: %w", err)
	}
	p.op = provider
	return p, nil
}

// corsOptions lets the origins of registered redirect URIs (single-page
// relying parties) call the token, userinfo and keys endpoints, without
// credentials; op's default would reflect any origin with credentials.
func (p *Provider) corsOptions() *cors.Options {
	var origins []string
	seen := map[string]bool{}
	for _, c := range p.clients {
		for _, raw := range c.cfg.RedirectURIs {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				continue
			}
			if o := u.Scheme + "://" + u.Host; !seen[o] {
				seen[o] = true
				origins = append(origins, o)
			}
		}
	}
	return &cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"Authorization", "Content-Type"},
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (p *Provider) loginURL(id string) string { return p.cfg.Issuer + loginPath + id }

// Register mounts the protocol endpoints at the root of wxlogin's origin (the
// issuer) and wxlogin's pages of the flow. Only the endpoints offered are
// routed: no implicit flow, device flow, introspection or revocation (op's
// own /healthz and /ready stay wxlogin's).
func (p *Provider) Register(e *echo.Echo, demo bool) {
	protocol := echo.WrapHandler(p.op)
	// Form bodies here are small (a code, a verifier, an id_token_hint);
	// net/http would read up to 10 MB.
	small := middleware.BodyLimit("16K")
	logs := p.withLogger
	e.GET(oidc.DiscoveryEndpoint, p.discovery, logs)
	e.GET("/authorize", p.authorize, logs)
	e.POST("/authorize", p.authorize, small, logs)
	for _, path := range []string{"/oauth/token", "/userinfo", "/keys"} {
		e.OPTIONS(path, protocol, logs) // CORS preflight, answered by op
	}
	e.POST("/oauth/token", protocol, small, logs)
	e.GET("/userinfo", protocol, logs)
	e.POST("/userinfo", protocol, small, logs)
	e.GET("/keys", protocol, logs)
	e.GET("/end_session", protocol, logs)
	e.POST("/end_session", protocol, small, logs)
	e.GET(loginPath+":id", p.login, logs)
	e.GET(logoutPath, p.logout, logs)
	if demo {
		e.GET(DemoPath, p.demoPage, logs)
	}
}

// discovery is op's document without what is not offered here: op always
// lists the implicit flow, the device and jwt-bearer grants, introspection
// and revocation.
func (p *Provider) discovery(c echo.Context) error {
	ctx := op.ContextWithIssuer(c.Request().Context(), p.cfg.Issuer)
	d := op.CreateDiscoveryConfig(ctx, p.op, p.store)
	d.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	d.ResponseModesSupported = []string{"query"}
	d.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode}
	d.TokenEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodNone, oidc.AuthMethodBasic, oidc.AuthMethodPost}
	d.TokenEndpointAuthSigningAlgValuesSupported = nil
	d.IntrospectionEndpoint, d.IntrospectionEndpointAuthMethodsSupported, d.IntrospectionEndpointAuthSigningAlgValuesSupported = "", nil, nil
	d.RevocationEndpoint, d.RevocationEndpointAuthMethodsSupported, d.RevocationEndpointAuthSigningAlgValuesSupported = "", nil, nil
	d.DeviceAuthorizationEndpoint, d.CheckSessionIframe = "", ""
	d.RequestObjectSigningAlgValuesSupported = nil
	d.RequestParameterSupported = false
	d.ClaimsParameterSupported = false
	d.RequestURIParameterSupported = false
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, d)
}

// authorize runs op's authorization endpoint, adds the cookie that binds the
// new request to this browser, and shows op's refusals that must not
// redirect (unknown client, unregistered redirect URI) as a page.
func (p *Provider) authorize(c echo.Context) error {
	if wait, ok := p.limiter.Allow(c.RealIP(), p.cfg.Now()); !ok {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		return p.errorPage(c, http.StatusTooManyRequests,
			"登录请求太频繁, 请稍后再试。 Too many login requests from your address: try again in a moment.")
	}
	w := &authorizeWriter{ResponseWriter: c.Response().Writer, p: p}
	p.op.ServeHTTP(w, c.Request())
	if w.refused {
		return p.errorPage(c, http.StatusBadRequest, strings.TrimSpace(w.body.String()))
	}
	return nil
}

type authorizeWriter struct {
	http.ResponseWriter
	p       *Provider
	refused bool
	body    strings.Builder
}

func (w *authorizeWriter) WriteHeader(status int) {
	h := w.Header()
	if status == http.StatusBadRequest && strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		w.refused = true
		h.Del("Content-Type")
		h.Del("X-Content-Type-Options")
		return
	}
	if loc := h.Get("Location"); status == http.StatusFound && strings.HasPrefix(loc, w.p.cfg.Issuer+loginPath) {
		id := strings.TrimPrefix(loc, w.p.cfg.Issuer+loginPath)
		h.Add("Set-Cookie", w.p.bindCookie(id, int(authRequestTTL/time.Second)).String())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *authorizeWriter) Write(b []byte) (int, error) {
	if w.refused {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (p *Provider) bindCookie(id string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: bindCookiePrefix + id, Value: p.mac("bind", id), Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode}
}

// mac authenticates value for purpose; "" when the keys cannot be read
// (then nothing verifies, which fails closed).
func (p *Provider) mac(purpose, value string) string {
	_, key, err := p.secrets.ready()
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *Provider) macOK(purpose, value, got string) bool {
	want := p.mac(purpose, value)
	return want != "" && hmac.Equal([]byte(want), []byte(got))
}

// sessionEnder adds RP-initiated logout to the store: op validates the
// request (id_token_hint, registered post_logout_redirect_uri) and then sends
// the browser to wxlogin's logout page, which can clear the session cookie.
type sessionEnder struct {
	*store
	p *Provider
}

func (s *sessionEnder) TerminateSessionFromRequest(_ context.Context, req *op.EndSessionRequest) (string, error) {
	q := url.Values{}
	if u, err := url.Parse(req.RedirectURI); err == nil && u.IsAbs() {
		q.Set("next", req.RedirectURI)
		q.Set("sig", s.p.mac("logout", req.RedirectURI))
	}
	return s.p.cfg.Issuer + logoutPath + "?" + q.Encode(), nil
}

var errNoSession = errors.New("no session")
