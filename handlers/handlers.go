// Package handlers maps wxlogin's HTTP API onto login.Service with Echo:
// routes, request and response types, and the error → status table.
//
// Construction: New takes everything in one Config struct; nothing is set
// on the API after construction.
package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	qrcode "github.com/skip2/go-qrcode"

	"wxlogin/events"
	"wxlogin/internal/iplimit"
	"wxlogin/login"
)

// Streams is what the handlers need from the event hub.
type Streams interface {
	// Acquire reserves a stream slot for a client, keyed by iplimit.Key.
	Acquire(client string) (release func(), err error)
	Changed(sceneID string) (<-chan struct{}, func())
	Serve(w http.ResponseWriter, r *http.Request, req events.StreamRequest)
}

// DevScanner sends a signed WeChat callback for a scan (demo mode only) and
// returns WeChat's reply text.
type DevScanner func(ctx context.Context, sceneID, openID string, firstFollow bool) (string, error)

// DevCodeSender sends a signed WeChat text message carrying content from
// openID (demo mode only) and returns WeChat's reply text.
type DevCodeSender func(ctx context.Context, openID, content string) (string, error)

// Config is what the HTTP layer needs to know about the deployment.
type Config struct {
	PublicURL      string // e.g. https://login.example.com; "" = paths only
	AllowedOrigins []string
	Demo           bool
	DevScan        DevScanner    // set only in demo mode
	DevSendCode    DevCodeSender // set only in demo mode
	// FollowQR is an image of the account's follow QR code and AccountName
	// its name, shown beside a login code (the code method).
	FollowQR    string
	AccountName string
	Static      fs.FS // the demo page and JS client
	OpenAPI     []byte
	SceneRate   int // scene creations per minute per IP; 0 = unlimited
	Ready       func(ctx context.Context) error
	Callback    http.Handler // WeChat's webhook
	Metrics     http.Handler // Prometheus, optional
	Log         *slog.Logger
	// IPExtractor picks the client IP (X-Forwarded-For from trusted proxies only).
	IPExtractor echo.IPExtractor
	// Middleware is added first (metrics, request logs).
	Middleware []echo.MiddlewareFunc
	// Links signs confirm links; set only in confirm mode (serves /confirm/).
	Links *login.LinkSigner
	// Admin turns on the operators' API (admin.go); nil = off.
	Admin *Admin
	// LoginText words a confirmed login on the confirm page, as the WeChat
	// reply would (the reply template); nil shows a plain message.
	LoginText func(login.Result) string
	// WebAuth is set when the oauth login method is on.
	WebAuth *WebAuthConfig
}

// Limits of request bodies.
const (
	MaxJSONBody = 4 << 10
	MaxWait     = 30 * time.Second
)

const sessionCookie = "wxl_session"

// API holds the handlers' dependencies.
type API struct {
	svc     *login.Service
	streams Streams
	cfg     Config
	log     *slog.Logger
	polls   *pollThrottle
	creates *iplimit.Limiter
	// oauthStarts limits how fast one address starts web authorisations:
	// each stores a state, so it gets the same budget as scene creation.
	oauthStarts *iplimit.Limiter
	secure      bool
}

// New returns the Echo instance serving the whole API.
func New(svc *login.Service, streams Streams, cfg Config) *echo.Echo {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &API{
		svc: svc, streams: streams, cfg: cfg, log: cfg.Log,
		polls:       newPollThrottle(svc.Interval()),
		creates:     iplimit.New(cfg.SceneRate),
		oauthStarts: iplimit.New(cfg.SceneRate),
		secure:      strings.HasPrefix(cfg.PublicURL, "https://"),
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(cfg.Log)
	e.IPExtractor = cfg.IPExtractor
	if e.IPExtractor == nil {
		e.IPExtractor = echo.ExtractIPDirect()
	}
	e.Use(middleware.Recover())
	e.Use(cfg.Middleware...)
	e.Use(securityHeaders)
	if len(cfg.AllowedOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:     cfg.AllowedOrigins,
			AllowCredentials: true,
			AllowHeaders:     []string{"Authorization", "Content-Type", "Last-Event-ID"},
			AllowMethods:     []string{http.MethodGet, http.MethodPost},
			ExposeHeaders:    []string{"Retry-After"},
		}))
	}

	api := e.Group("/api/v1", middleware.BodyLimit(strconv.Itoa(MaxJSONBody)))
	// The group's middleware makes Echo add a catch-all 404 under /api/v1,
	// which would win over its own 405: answer unmatched requests ourselves.
	api.RouteNotFound("", apiUnmatched(e))
	api.RouteNotFound("/*", apiUnmatched(e))
	api.POST("/login/scenes", a.createScene)
	api.GET("/login/scenes/:id", a.pollScene)
	api.GET("/login/scenes/:id/events", a.streamScene)
	api.GET("/login/scenes/:id/qr.png", a.sceneQR)
	api.POST("/login/token", a.exchange)
	api.GET("/me", a.me)
	api.POST("/logout", a.logout)
	if len(cfg.OpenAPI) > 0 {
		api.GET("/openapi.yaml", func(c echo.Context) error {
			return c.Blob(http.StatusOK, "application/yaml", cfg.OpenAPI)
		})
	}
	if cfg.WebAuth != nil {
		a.registerWebAuth(api)
	}
	if cfg.Admin != nil {
		registerAdmin(api, cfg.Admin, cfg.Log)
	}
	if cfg.Demo && cfg.DevScan != nil {
		api.POST("/dev/scan", a.devScan)
		if cfg.DevSendCode != nil {
			api.POST("/dev/code", a.devSendCode)
		}
		api.GET("/dev/config", func(c echo.Context) error {
			return c.JSON(http.StatusOK, map[string]bool{"demo": true})
		})
	}

	cb := echo.WrapHandler(cfg.Callback)
	e.GET("/wechat/callback", cb)
	e.POST("/wechat/callback", cb)

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", a.ready)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	if cfg.Links != nil {
		registerConfirm(e, svc, cfg.Links, cfg.LoginText, cfg.PublicURL)
	}
	if cfg.Static != nil {
		registerStatic(e, cfg.Static, cfg.Demo)
	}
	return e
}

// apiMethods are the methods an API route may be registered for.
var apiMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// apiUnmatched answers a request under /api/v1 that matched no route: 405
// with Allow when the path has routes for other methods, 404 otherwise.
func apiUnmatched(e *echo.Echo) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := echo.GetPath(c.Request())
		var allow []string
		for _, m := range apiMethods {
			probe := e.NewContext(nil, nil)
			e.Router().Find(m, path, probe)
			if probe.Path() != c.Path() { // a route, not this catch-all
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			return echo.ErrNotFound
		}
		c.Response().Header().Set(echo.HeaderAllow, strings.Join(allow, ", "))
		if c.Request().Method == http.MethodOptions {
			return c.NoContent(http.StatusNoContent)
		}
		return echo.ErrMethodNotAllowed
	}
}

// SceneCreated is the answer to POST /login/scenes.
type SceneCreated struct {
	SceneID   string       `json:"scene_id"`
	Secret    string       `json:"secret"`
	Status    login.Status `json:"status"`
	QRURL     string       `json:"qr_url"`
	QRImage   string       `json:"qr_image"`
	ExpiresAt time.Time    `json:"expires_at"`
	ExpiresIn int          `json:"expires_in"`
	Interval  int          `json:"interval"`
	EventsURL string       `json:"events_url"`
	StatusURL string       `json:"status_url"`
	// Methods are the ways this scene can be completed: "qr" (scan QRURL),
	// "code" (send LoginCode to the account), "oauth" (OAuthURL, inside
	// WeChat's browser).
	Methods []string `json:"methods"`
	// The code method: the code to send, and where to send it.
	LoginCode   string `json:"login_code,omitempty"`
	FollowQR    string `json:"follow_qr,omitempty"`
	AccountName string `json:"account_name,omitempty"`
	// OAuthURL starts WeChat's web authorisation (the oauth method, inside
	// WeChat's browser); the client adds ?return_to=.
	OAuthURL string `json:"oauth_url,omitempty"`
}

func (a *API) createScene(c echo.Context) error {
	ip := c.RealIP()
	if wait, ok := a.creates.Allow(ip, time.Now()); !ok {
		return &login.Error{Code: login.ERATELIMITED, Message: "too many new scenes from your address; slow down", RetryAfter: wait}
	}
	ns, err := a.svc.CreateScene(c.Request().Context(), login.ClientMeta{IP: ip, UserAgent: c.Request().UserAgent()})
	if err != nil {
		return err
	}
	sc := ns.Scene
	base := strings.TrimRight(a.cfg.PublicURL, "/") + "/api/v1/login/scenes/" + sc.ID
	ttl := sc.ExpiresAt.Sub(sc.CreatedAt)
	c.SetCookie(&http.Cookie{
		Name:     "wxl_" + sc.ID,
		Value:    ns.Secret,
		Path:     "/api/v1/login",
		MaxAge:   int((ttl + 5*time.Minute) / time.Second),
		HttpOnly: true,
		Secure:   a.secure,
		SameSite: http.SameSiteStrictMode,
	})
	c.Response().Header().Set("Cache-Control", "no-store")
	var oauthURL string
	if a.cfg.WebAuth != nil {
		oauthURL = base + "/oauth"
	}
	return c.JSON(http.StatusCreated, SceneCreated{
		OAuthURL:    oauthURL,
		SceneID:     sc.ID,
		Secret:      ns.Secret,
		Status:      sc.Status,
		QRURL:       sc.QRURL,
		QRImage:     base + "/qr.png",
		ExpiresAt:   sc.ExpiresAt.UTC(),
		ExpiresIn:   int(ttl / time.Second),
		Interval:    int(a.svc.Interval() / time.Second),
		EventsURL:   base + "/events",
		StatusURL:   base,
		Methods:     a.sceneMethods(sc),
		LoginCode:   sc.LoginCode,
		FollowQR:    a.codeField(sc, a.cfg.FollowQR),
		AccountName: a.codeField(sc, a.cfg.AccountName),
	})
}

// sceneMethods lists how a new scene can be completed.
func (a *API) sceneMethods(sc *login.Scene) []string {
	methods := []string{}
	if sc.QRURL != "" {
		methods = append(methods, "qr")
	}
	if sc.LoginCode != "" {
		methods = append(methods, "code")
	}
	if a.cfg.WebAuth != nil {
		methods = append(methods, "oauth")
	}
	return methods
}

// codeField is v for a scene with a login code, "" otherwise.
func (a *API) codeField(sc *login.Scene, v string) string {
	if sc.LoginCode == "" {
		return ""
	}
	return v
}

// sceneSecret is the scene's secret from the Bearer header or the scene's cookie.
func sceneSecret(c echo.Context, id string) string { return bearerOrCookie(c, "wxl_"+id) }

// bearerOrCookie is the credential a request carries: its Bearer token, else
// the value of the named cookie (what a browser page has), else "".
func bearerOrCookie(c echo.Context, cookie string) string {
	if t := bearer(c); t != "" {
		return t
	}
	if ck, err := c.Cookie(cookie); err == nil {
		return ck.Value
	}
	return ""
}

// bearer is the token of an "Authorization: Bearer" header, or "".
func bearer(c echo.Context) string {
	h := c.Request().Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (a *API) pollScene(c echo.Context) error {
	id := c.Param("id")
	secret := sceneSecret(c, id)
	ctx := c.Request().Context()
	sc, err := a.svc.Authorize(ctx, id, secret)
	if err != nil {
		return err
	}
	wait, err := parseWait(c.QueryParam("wait"))
	if err != nil {
		return err
	}
	if retry, ok := a.polls.begin(id); !ok {
		return &login.Error{Code: login.ESLOWDOWN, Message: "polling faster than the interval", RetryAfter: retry}
	}
	defer a.polls.end(id)

	v, err := a.svc.ClientView(ctx, sc, secret)
	if err != nil {
		return err
	}
	if wait > 0 && v.Status.Waiting() {
		v, err = a.longPoll(c, id, secret, v, wait)
		if err != nil {
			return err
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, v)
}

// longPoll waits until the scene changes (on any instance) or wait passes.
func (a *API) longPoll(c echo.Context, id, secret string, first login.View, wait time.Duration) (login.View, error) {
	release, err := a.streams.Acquire(iplimit.Key(c.RealIP()))
	if err != nil {
		return login.View{}, err
	}
	defer release()
	ctx := c.Request().Context()
	changed, stop := a.streams.Changed(id)
	defer stop()
	// Re-read after registering, so a change between the first read and the
	// registration is not missed.
	v, err := a.currentView(ctx, id, secret)
	if err != nil || v.Version != first.Version {
		return v, err
	}
	// Wake at expiry too: the status changes then even if nobody publishes.
	until := min(wait, time.Until(v.ExpiresAt)+50*time.Millisecond)
	timer := time.NewTimer(max(until, 0))
	defer timer.Stop()
	select {
	case <-changed:
	case <-timer.C:
	case <-ctx.Done():
		return v, nil
	}
	return a.currentView(ctx, id, secret)
}

func (a *API) currentView(ctx context.Context, id, secret string) (login.View, error) {
	sc, err := a.svc.Scene(ctx, id)
	if err != nil {
		return login.View{}, err
	}
	return a.svc.ClientView(ctx, sc, secret)
}

func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > int(MaxWait/time.Second) {
		return 0, login.Errorf(login.EINVALID, "wait must be a whole number of seconds from 0 to 30")
	}
	return time.Duration(n) * time.Second, nil
}

func (a *API) streamScene(c echo.Context) error {
	req, ok, err := a.streamRequest(c)
	if err != nil || !ok {
		return err
	}
	release, err := a.streams.Acquire(iplimit.Key(c.RealIP()))
	if err != nil {
		return err
	}
	// The stream may outlive this handler (events.Hub.Serve): the slot is
	// released when it ends.
	req.Done = release
	a.streams.Serve(c.Response(), c.Request(), req)
	return nil
}

// streamRequest checks a stream request and answers it when there is nothing
// to stream (ok false).
func (a *API) streamRequest(c echo.Context) (req events.StreamRequest, ok bool, err error) {
	id := c.Param("id")
	secret := sceneSecret(c, id)
	ctx := c.Request().Context()
	sc, err := a.svc.Authorize(ctx, id, secret)
	if login.ErrorCode(err) == login.ENOTFOUND {
		return req, false, c.NoContent(http.StatusNoContent) // tells EventSource to stop
	}
	if err != nil {
		return req, false, err
	}
	v, err := a.svc.ClientView(ctx, sc, secret)
	if err != nil {
		return req, false, err
	}
	lastID := events.ParseLastEventID(c.Request().Header.Get("Last-Event-ID"))
	switch {
	case v.Status == login.StatusConsumed:
		return req, false, c.NoContent(http.StatusNoContent)
	case v.Status.Terminal() && lastID == v.Version:
		return req, false, c.NoContent(http.StatusNoContent) // the client has everything
	case v.Status.Terminal():
		// Lost the connection as the result was sent: send it again, once.
		h := c.Response().Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		c.Response().WriteHeader(http.StatusOK)
		return req, false, events.WriteEvent(c.Response(), v, 3*time.Second)
	}
	return events.StreamRequest{
		SceneID:     id,
		Code:        login.CodeFor(secret, id),
		LastEventID: lastID,
		Current: func(ctx context.Context) (login.View, error) {
			return a.currentView(ctx, id, secret)
		},
	}, true, nil
}

func (a *API) sceneQR(c echo.Context) error {
	sc, err := a.svc.Scene(c.Request().Context(), c.Param("id"))
	if errors.Is(err, login.ErrNotFound) || (err == nil && !sc.StatusAt(a.svc.Now()).Waiting()) {
		return login.Errorf(login.ENOTFOUND, "no QR code for this scene")
	}
	if err != nil {
		return err
	}
	png, err := qrcode.Encode(sc.QRURL, qrcode.Medium, 320)
	if err != nil {
		return &login.Error{Code: login.EINTERNAL, Message: "cannot render the QR code", Err: err}
	}
	c.Response().Header().Set("Cache-Control", "private, max-age=60")
	return c.Blob(http.StatusOK, "image/png", png)
}

// TokenRequest is the body of POST /login/token.
type TokenRequest struct {
	SceneID string `json:"scene_id"`
	Code    string `json:"code"`
}

// TokenResponse is a new session.
type TokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   int             `json:"expires_in"`
	User        *login.UserView `json:"user"`
}

func (a *API) exchange(c echo.Context) error {
	var req TokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.SceneID == "" || req.Code == "" {
		return login.Errorf(login.EINVALID, "scene_id and code are required")
	}
	l, err := a.svc.Exchange(c.Request().Context(), req.SceneID, sceneSecret(c, req.SceneID), req.Code)
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: l.Token, Path: "/api/v1",
		MaxAge: int(l.ExpiresIn / time.Second), HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, TokenResponse{AccessToken: l.Token, TokenType: "Bearer",
		ExpiresIn: int(l.ExpiresIn / time.Second), User: l.User})
}

// sessionToken is the session's token from the Bearer header or the session cookie.
func sessionToken(c echo.Context) string { return bearerOrCookie(c, sessionCookie) }

func (a *API) me(c echo.Context) error {
	u, err := a.svc.Me(c.Request().Context(), sessionToken(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, u)
}

func (a *API) logout(c echo.Context) error {
	if err := a.svc.Logout(c.Request().Context(), sessionToken(c)); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/api/v1", MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	return c.NoContent(http.StatusNoContent)
}

// DevScanRequest asks the demo to act as WeChat for a scan.
type DevScanRequest struct {
	SceneID     string `json:"scene_id"`
	OpenID      string `json:"openid,omitempty"`
	FirstFollow bool   `json:"first_follow,omitempty"`
}

// DemoOpenID is the demo's one user, so repeated demo logins count up.
const DemoOpenID = "oDEMO_wxlogin_demo_user_0001"

// demoActor authorises a simulated WeChat action for its scene (the page
// holds the scene's secret, so it can act only for its own scene) and names
// who acts: the demo's one user unless the request names another.
func (a *API) demoActor(c echo.Context, sceneID, openID string) (string, error) {
	if _, err := a.svc.Authorize(c.Request().Context(), sceneID, sceneSecret(c, sceneID)); err != nil {
		return "", err
	}
	if openID == "" {
		openID = DemoOpenID
	}
	return openID, nil
}

func (a *API) devScan(c echo.Context) error {
	var req DevScanRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	openID, err := a.demoActor(c, req.SceneID, req.OpenID)
	if err != nil {
		return err
	}
	if len(openID) > 64 {
		return login.Errorf(login.EINVALID, "openid is too long")
	}
	text, err := a.cfg.DevScan(c.Request().Context(), req.SceneID, openID, req.FirstFollow)
	if err != nil {
		return &login.Error{Code: login.EUNAVAILABLE, Message: "the simulated WeChat callback failed", Err: err}
	}
	return c.JSON(http.StatusOK, map[string]string{"reply": text})
}

// DevCodeRequest asks the demo to act as WeChat for a text message that
// carries a login code.
type DevCodeRequest struct {
	SceneID string `json:"scene_id"`
	Code    string `json:"code"`
	OpenID  string `json:"openid,omitempty"`
}

// devSendCode sends the code, as WeChat would post the person's message,
// to our own webhook. The scene's secret is required as for /dev/scan, so
// the demo page can only act for its own scene; the text sent is what the
// page gives, so a wrong code shows the miss reply.
func (a *API) devSendCode(c echo.Context) error {
	var req DevCodeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	openID, err := a.demoActor(c, req.SceneID, req.OpenID)
	if err != nil {
		return err
	}
	if len(openID) > 64 || len(req.Code) > 64 {
		return login.Errorf(login.EINVALID, "openid or code is too long")
	}
	text, err := a.cfg.DevSendCode(c.Request().Context(), openID, req.Code)
	if err != nil {
		return &login.Error{Code: login.EUNAVAILABLE, Message: "the simulated WeChat message failed", Err: err}
	}
	return c.JSON(http.StatusOK, map[string]string{"reply": text})
}

func (a *API) ready(c echo.Context) error {
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(c.Request().Context()); err != nil {
			a.log.Warn("not ready", "err", err)
			return c.JSON(http.StatusServiceUnavailable, ErrorBody{Error: login.EUNAVAILABLE, Message: "not ready: " + err.Error()})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// decodeJSON reads one JSON object of at most MaxJSONBody bytes.
func decodeJSON(c echo.Context, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, MaxJSONBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		// Echo's BodyLimit fails the read with its own 413 error when no
		// Content-Length announced the size (a chunked body).
		if errors.As(err, &mbe) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return login.Errorf(login.ETOOLARGE, "request body larger than %d bytes", MaxJSONBody)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // the server's body deadline
			return echo.NewHTTPError(http.StatusRequestTimeout, "the request body did not arrive in time")
		}
		return login.Errorf(login.EINVALID, "cannot read the request body")
	}
	if len(body) > MaxJSONBody {
		return login.Errorf(login.ETOOLARGE, "request body larger than %d bytes", MaxJSONBody)
	}
	return DecodeJSONBody(body, v)
}

// DecodeJSONBody decodes exactly one JSON object with no trailing data.
func DecodeJSONBody(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return login.Errorf(login.EINVALID, "malformed JSON body")
	}
	if dec.More() {
		return login.Errorf(login.EINVALID, "malformed JSON body: trailing data")
	}
	return nil
}

// securityHeaders sets headers every answer should carry.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}
