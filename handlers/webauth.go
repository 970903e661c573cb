package handlers

// The oauth login method: same-device login inside WeChat's own browser.
// GET /api/v1/login/scenes/{id}/oauth sends the browser to WeChat's
// authorisation page; WeChat sends it back to /api/v1/login/oauth/callback,
// which confirms the scene and sends the browser back to return_to, where
// the page finishes the login (code exchange) by itself. Both are
// navigations, so every answer is a page or a redirect, never JSON.

import (
	"bytes"
	"context"
	_ "embed"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"wxlogin/internal/random"
	"wxlogin/login"
)

// Paths of the oauth method.
const (
	WebAuthCallbackPath = "/api/v1/login/oauth/callback"
	// DevAuthorizePath is the demo stand-in for WeChat's authorisation page.
	DevAuthorizePath = "/api/v1/dev/oauth/authorize"
)

// webAuthCookiePrefix names the cookie that binds a state to the browser
// that started it (one per state: two tabs never overwrite each other).
const webAuthCookiePrefix = "wxl_oa_"

// WebAuthConfig is set when the oauth login method is on.
type WebAuthConfig struct {
	// AuthorizeURL is WeChat's authorisation page (the stand-in's in demo
	// mode) for state, sending the browser back to redirectURI.
	AuthorizeURL func(redirectURI, state string) string
	// Observe, when set, is told how each return from WeChat ended.
	Observe func(outcome login.WebAuthOutcome)
	// DevAuthorize, in demo mode, is what WeChat does when the person
	// agrees on the stand-in's page: a code for openID.
	DevAuthorize func(ctx context.Context, openID string) (string, error)
}

//go:embed webauth.html
var webAuthHTML string

var webAuthTemplate = template.Must(template.New("webauth").Parse(webAuthHTML))

type webAuthView struct {
	Nonce    string
	Title    string
	Message  string
	Link     string // a way back, when there is one
	LinkText string
	// The demo's authorisation page.
	Authorize   bool
	RedirectURI string
	State       string
	OpenID      string
}

func (a *API) registerWebAuth(api *echo.Group) {
	api.GET("/login/scenes/:id/oauth", a.startWebAuth)
	api.GET("/login/oauth/callback", a.finishWebAuth)
	if a.cfg.Demo && a.cfg.WebAuth.DevAuthorize != nil {
		api.GET("/dev/oauth/authorize", a.devAuthorizePage)
		api.POST("/dev/oauth/authorize", a.devAuthorize, middleware.BodyLimit("4KB"))
	}
}

// webAuthCallbackURL is where WeChat sends the browser back: under
// WXLOGIN_PUBLIC_URL, which WeChat's web authorisation domain must match.
// Demo mode without one answers on the host the browser used (loopback).
func (a *API) webAuthCallbackURL(c echo.Context) string {
	if a.cfg.PublicURL != "" {
		return strings.TrimRight(a.cfg.PublicURL, "/") + WebAuthCallbackPath
	}
	return "http://" + c.Request().Host + WebAuthCallbackPath
}

// webAuthCookiePath scopes the binding cookie to the callback, as browsers
// see its path (WXLOGIN_PUBLIC_URL may put wxlogin under a prefix).
func (a *API) webAuthCookiePath(c echo.Context) string {
	if u, err := url.Parse(a.webAuthCallbackURL(c)); err == nil && u.Path != "" {
		return u.Path
	}
	return WebAuthCallbackPath
}

// selfOrigin is wxlogin's origin as browsers see it.
func (a *API) selfOrigin(c echo.Context) string {
	u, _ := url.Parse(a.webAuthCallbackURL(c))
	return originOf(u)
}

func (a *API) startWebAuth(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	sc, err := a.svc.Authorize(ctx, id, sceneSecret(c, id))
	if err != nil {
		status, body := errorResponse(err)
		return a.webAuthPage(c, status, webAuthView{Title: "无法登录 / Cannot log in",
			Message: "这个登录请求无效或已过期, 请回到网页重试。 This login request is not valid or has ended (" + body.Message + "); go back and try again."})
	}
	raw := c.QueryParams()["return_to"]
	if len(raw) > 1 {
		return a.badReturnTo(c)
	}
	returnTo, err := checkReturnTo(strings.Join(raw, ""), a.selfOrigin(c), a.cfg.AllowedOrigins)
	if err != nil {
		return a.badReturnTo(c)
	}
	if wait, ok := a.oauthStarts.Allow(c.RealIP(), time.Now()); !ok {
		c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		return a.webAuthPage(c, http.StatusTooManyRequests, webAuthView{Title: "请稍后再试 / Try again shortly",
			Message: "登录请求过于频繁, 请稍后再试。 Too many login attempts from your address; try again in a moment."})
	}
	start, err := a.svc.StartWebAuth(ctx, sc, returnTo)
	if err != nil {
		status, body := errorResponse(err)
		if status >= 500 {
			a.log.Error("start web authorisation", "scene_id", id, "err", err)
		}
		return a.webAuthPage(c, status, webAuthView{Title: "无法登录 / Cannot log in",
			Message: "暂时无法使用微信登录, 请回到网页重试。 WeChat login cannot start (" + body.Message + "); go back and try again."})
	}
	c.SetCookie(&http.Cookie{
		Name:     webAuthCookiePrefix + start.State,
		Value:    start.Binding,
		Path:     a.webAuthCookiePath(c),
		MaxAge:   max(1, int(time.Until(start.ExpiresAt)/time.Second)+60),
		HttpOnly: true,
		Secure:   a.secure,
		// Lax: the browser comes back from WeChat's page, another site.
		SameSite: http.SameSiteLaxMode,
	})
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Redirect(http.StatusFound, a.cfg.WebAuth.AuthorizeURL(a.webAuthCallbackURL(c), start.State))
}

func (a *API) badReturnTo(c echo.Context) error {
	return a.webAuthPage(c, http.StatusBadRequest, webAuthView{Title: "地址无效 / Invalid address",
		Message: "登录后要返回的地址 (return_to) 不被允许: 它必须是本站的路径, 或 WXLOGIN_ALLOWED_ORIGINS 中某个来源下的地址。 " +
			"The address to return to after the login (return_to) is not allowed: " + errReturnTo.Error() + "."})
}

func (a *API) finishWebAuth(c echo.Context) error {
	q := c.QueryParams()
	state := q.Get("state")
	var binding string
	if login.ValidWebAuthState(state) {
		if ck, err := c.Cookie(webAuthCookiePrefix + state); err == nil {
			binding = ck.Value
		}
	}
	fin, err := a.svc.FinishWebAuth(c.Request().Context(), state, binding, q.Get("code"))
	if a.cfg.WebAuth.Observe != nil {
		a.cfg.WebAuth.Observe(fin.Outcome)
	}
	if err != nil {
		a.log.Error("web authorisation callback", "outcome", fin.Outcome, "err", err)
	} else {
		a.log.Info("web authorisation callback", "outcome", fin.Outcome)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	switch fin.Outcome {
	case login.WebAuthConfirmed, login.WebAuthReplayed, login.WebAuthAlreadyUsed:
		// The page shows what happened (logged in, or confirmed elsewhere).
		return c.Redirect(http.StatusFound, fin.ReturnTo)
	}
	status, v := webAuthFailure(fin)
	return a.webAuthPage(c, status, v)
}

// webAuthFailure words the page for a return from WeChat that logs nobody in.
func webAuthFailure(fin login.WebAuthFinish) (int, webAuthView) {
	back := func(v webAuthView) webAuthView {
		if fin.ReturnTo != "" {
			v.Link, v.LinkText = fin.ReturnTo, "返回 / Go back"
		}
		return v
	}
	switch fin.Outcome {
	case login.WebAuthRefused:
		return http.StatusOK, back(webAuthView{Title: "已取消 / Cancelled",
			Message: "你拒绝了微信授权, 没有登录。 You declined WeChat's authorisation; you are not logged in."})
	case login.WebAuthSnapshot:
		return http.StatusForbidden, back(webAuthView{Title: "请打开完整页面 / Open the full page",
			Message: "你正在浏览微信的快照页, 无法在这里登录。请点击页面底部的“使用完整服务”(或在微信中打开完整网页) 后重试。 " +
				"This is WeChat's snapshot (preview) of the page, where nobody can log in. Tap \"use the full service\" at the bottom (or open the page fully in WeChat) and try again."})
	case login.WebAuthSceneExpired:
		return http.StatusGone, back(webAuthView{Title: "已过期 / Expired",
			Message: "这次登录已过期, 请回到网页重试。 This login has expired; go back and try again."})
	case login.WebAuthWrongBrowser:
		return http.StatusForbidden, webAuthView{Title: "无法登录 / Cannot log in",
			Message: "请在发起登录的同一个浏览器中完成登录。 Finish the login in the same browser that started it."}
	case login.WebAuthBadCode, login.WebAuthCodeRejected:
		return http.StatusBadRequest, back(webAuthView{Title: "授权失败 / Authorisation failed",
			Message: "微信的授权码无效或已使用, 请回到网页重试。 WeChat's authorisation code was not valid or already used; go back and try again."})
	case login.WebAuthQuota, login.WebAuthWeChatError:
		return http.StatusServiceUnavailable, back(webAuthView{Title: "微信暂时不可用 / WeChat unavailable",
			Message: "微信暂时无法完成授权, 请稍后重试。 WeChat cannot complete the authorisation right now; try again in a moment."})
	case login.WebAuthError:
		return http.StatusServiceUnavailable, back(webAuthView{Title: "暂时无法处理 / Try again",
			Message: "服务暂时不可用, 请稍后重试。 The service is unavailable; try again shortly."})
	}
	return http.StatusBadRequest, webAuthView{Title: "链接无效 / Invalid link",
		Message: "这个登录链接无效或已过期, 请回到网页重试。 This login link is not valid or has expired; go back and try again."}
}

// devAuthorizePage plays WeChat's authorisation page (demo mode only).
func (a *API) devAuthorizePage(c echo.Context) error {
	redirectURI, state := c.QueryParam("redirect_uri"), c.QueryParam("state")
	if redirectURI != a.webAuthCallbackURL(c) || !login.ValidWebAuthState(state) {
		return a.webAuthPage(c, http.StatusBadRequest, webAuthView{Title: "参数错误 / Bad request",
			Message: "redirect_uri 或 state 无效。 redirect_uri or state is not valid."})
	}
	return a.webAuthPage(c, http.StatusOK, webAuthView{Title: "微信授权 (演示) / WeChat authorisation (demo)",
		Authorize: true, RedirectURI: redirectURI, State: state, OpenID: DemoOpenID})
}

// devAuthorize answers the stand-in page's form as WeChat would: back to
// the redirect URI with a code (allow) or without one (refuse). The redirect
// URI must be our own callback: even the demo never redirects elsewhere.
func (a *API) devAuthorize(c echo.Context) error {
	if err := c.Request().ParseForm(); err != nil {
		return a.webAuthPage(c, http.StatusBadRequest, webAuthView{Title: "参数错误 / Bad request", Message: "Bad form."})
	}
	f := c.Request().PostForm
	redirectURI, state, openID := f.Get("redirect_uri"), f.Get("state"), strings.TrimSpace(f.Get("openid"))
	if redirectURI != a.webAuthCallbackURL(c) || !login.ValidWebAuthState(state) || len(openID) > 64 {
		return a.webAuthPage(c, http.StatusBadRequest, webAuthView{Title: "参数错误 / Bad request",
			Message: "redirect_uri, state 或 openid 无效。 redirect_uri, state or openid is not valid."})
	}
	back := url.Values{"state": {state}}
	if f.Get("decision") == "allow" {
		if openID == "" {
			openID = DemoOpenID
		}
		code, err := a.cfg.WebAuth.DevAuthorize(c.Request().Context(), openID)
		if err != nil {
			a.log.Warn("demo authorisation page: the stand-in issued no code", "err", err)
			return a.webAuthPage(c, http.StatusServiceUnavailable, webAuthView{Title: "请稍后再试 / Try again shortly",
				Message: "模拟的微信没有应答。 The simulated WeChat did not answer."})
		}
		back.Set("code", code)
	}
	return c.Redirect(http.StatusFound, redirectURI+"?"+back.Encode())
}

// webAuthPage writes a page with its own CSP: no script, one inline style
// allowed by a fresh nonce, forms post only to us (and the redirects that
// follow stay on the origins a browser may return to), no framing.
func (a *API) webAuthPage(c echo.Context, status int, v webAuthView) error {
	v.Nonce = random.Token(16)
	var buf bytes.Buffer
	if err := webAuthTemplate.Execute(&buf, v); err != nil {
		return &login.Error{Code: login.EINTERNAL, Message: "cannot render the page", Err: err}
	}
	formAction := "'self'"
	for _, o := range a.cfg.AllowedOrigins {
		formAction += " " + o
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+v.Nonce+"'; "+
		"form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}
