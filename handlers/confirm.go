package handlers

// The confirm page of confirm mode (WXLOGIN_CONFIRM=link), the defence
// against QR-login phishing (QRLJacking): a scan only marks the scene
// "scanned", and WeChat's reply carries a signed link to this page. The page
// shows where the login request came from (IP, browser, time); only a POST
// from its form decides. GET never changes anything, so a link-preview bot
// or a prefetching browser that fetches the link cannot confirm a login.

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"wxlogin/internal/random"
	"wxlogin/login"
)

// ConfirmPath is where confirm links point, under the public URL. The
// token travels in the query (?t=), not the path: request logs record the
// path only, and the token is a bearer capability for its scene.
const ConfirmPath = "/confirm"

//go:embed confirm.html
var confirmHTML string

var confirmTemplate = template.Must(template.New("confirm").Parse(confirmHTML))

// beijing is the time zone WeChat users read; the page shows UTC too.
var beijing = time.FixedZone("UTC+8", 8*3600)

// ConfirmLink returns the function the WeChat callback uses to put a signed
// link into its reply. The link lives as long as the scene: its expiry is the
// scene's, so a retried callback gets the very same link (and reply text).
func ConfirmLink(svc *login.Service, links *login.LinkSigner, publicURL string) func(sceneID, openID string) string {
	base := strings.TrimRight(publicURL, "/") + ConfirmPath + "?t="
	return func(sceneID, openID string) string {
		// The callback has just written this scene; the read is a local
		// lookup, bounded in case storage is struggling.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		expires := svc.Now().Add(svc.QRTTL()) // a scene never outlives this
		if sc, err := svc.Scene(ctx, sceneID); err == nil {
			expires = sc.ExpiresAt
		}
		return base + url.QueryEscape(links.Token(sceneID, openID, expires))
	}
}

// confirmPage serves GET (show) and POST (decide) for one link.
type confirmPage struct {
	svc       *login.Service
	links     *login.LinkSigner
	loginText func(login.Result) string
	origin    string // the public URL's origin: the only one whose pages may post here
}

func registerConfirm(e *echo.Echo, svc *login.Service, links *login.LinkSigner, loginText func(login.Result) string, publicURL string) {
	if loginText == nil {
		loginText = func(login.Result) string { return "登录成功! Logged in." }
	}
	p := &confirmPage{svc: svc, links: links, loginText: loginText, origin: publicOrigin(publicURL)}
	limit := middleware.BodyLimit("4KB")
	e.GET(ConfirmPath, p.show)
	e.POST(ConfirmPath, p.decide, limit)
}

// confirmView is the template's data.
type confirmView struct {
	Nonce          string
	Title          string
	Message        string
	Ask            bool
	ClientIP       string
	UserAgent      string
	RequestedAt    string
	RequestedAtUTC string
}

func (p *confirmPage) show(c echo.Context) error {
	sc, status, v := p.load(c)
	if sc == nil {
		return p.render(c, status, v)
	}
	switch sc.StatusAt(p.svc.Now()) {
	case login.StatusScanned:
		return p.render(c, http.StatusOK, askView(sc))
	case login.StatusConfirmed, login.StatusConsumed, login.StatusDenied:
		return p.render(c, http.StatusConflict, usedView())
	}
	return p.render(c, http.StatusGone, expiredView())
}

func (p *confirmPage) decide(c echo.Context) error {
	// The link is the real protection (it is signed, single-use and bound
	// to the scanner); refusing posts from other sites also stops a page
	// that learnt a link from deciding with the person's browser.
	if !p.fromOwnPage(c.Request()) {
		return p.render(c, http.StatusForbidden, messageView("请从微信中打开 / Open from WeChat",
			"这个请求不是从确认页面发出的。 This request did not come from the confirm page; open the link from WeChat again."))
	}
	// Only the form's body counts: a decision in the query string is ignored.
	if err := c.Request().ParseForm(); err != nil {
		if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return err
		}
		return p.render(c, http.StatusBadRequest, messageView("无法读取请求 / Bad request", "请回到微信重新打开链接。 Open the link from WeChat again."))
	}
	var approve bool
	switch c.Request().PostForm.Get("decision") {
	case "confirm":
		approve = true
	case "deny":
	default:
		return p.render(c, http.StatusBadRequest, messageView("请选择 / Choose", "请点 \"确认登录\" 或 \"拒绝\"。 Tap Confirm or Deny."))
	}
	sc, status, v := p.load(c)
	if sc == nil {
		return p.render(c, status, v)
	}
	res, err := p.decision(c.Request().Context(), sc, approve)
	if err != nil {
		return err
	}
	switch res.Outcome {
	case login.OutcomeConfirmed:
		return p.render(c, http.StatusOK, messageView("登录成功 / Logged in",
			p.loginText(res)+" 请回到网页继续。 You can return to the browser now."))
	case login.OutcomeDenied:
		return p.render(c, http.StatusOK, messageView("已拒绝 / Denied",
			"这次登录已被拒绝, 网页不会登录。 The login was denied; the browser is not logged in."))
	case login.OutcomeDecided:
		return p.render(c, http.StatusConflict, usedView())
	}
	return p.render(c, http.StatusGone, expiredView())
}

// fromOwnPage reports whether a POST comes from the confirm page itself.
// Browsers say where a request comes from in Sec-Fetch-Site, or else in
// Origin; a request with neither is not from a browser that could be led by
// another site (curl, an old browser without Origin on forms).
func (p *confirmPage) fromOwnPage(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		return origin == p.origin // "null" (a sandboxed frame, a data: page) never is
	}
	return true
}

// publicOrigin is the origin of WXLOGIN_PUBLIC_URL as a browser sends it
// in Origin ("" when there is none).
func publicOrigin(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return originOf(u)
}

// decision applies the choice of the person who scanned: approval is one
// more way of identifying them, so it confirms through login.Service.Confirm
// like a scan does.
func (p *confirmPage) decision(ctx context.Context, sc *login.Scene, approve bool) (login.Result, error) {
	if !approve {
		return p.svc.Deny(ctx, sc.ID, sc.OpenID)
	}
	return p.svc.Confirm(ctx, login.Identification{SceneID: sc.ID, OpenID: sc.OpenID, Method: login.MethodConfirmLink})
}

// load checks the link and returns its scene, or the status and page to show
// instead. The MAC is checked against the openid stored in the scene, so the
// link works only for the person who scanned.
func (p *confirmPage) load(c echo.Context) (*login.Scene, int, confirmView) {
	invalid := messageView("链接无效 / Invalid link", "这个链接无效。 This link is not valid.")
	claim, err := login.ParseLinkToken(c.QueryParam("t"))
	if err != nil {
		return nil, http.StatusNotFound, invalid
	}
	sc, err := p.svc.Scene(c.Request().Context(), claim.SceneID)
	if errors.Is(err, login.ErrNotFound) {
		return nil, http.StatusGone, expiredView()
	}
	if err != nil {
		return nil, http.StatusServiceUnavailable, messageView("暂时无法处理 / Try again",
			"服务暂时不可用, 请稍后再试。 The service is unavailable; try again shortly.")
	}
	switch err := p.links.Verify(claim, sc.OpenID, p.svc.Now()); {
	case errors.Is(err, login.ErrLinkExpired):
		return nil, http.StatusGone, expiredView()
	case err != nil:
		return nil, http.StatusForbidden, invalid
	}
	return sc, 0, confirmView{}
}

func askView(sc *login.Scene) confirmView {
	ua := sc.UserAgent
	if ua == "" {
		ua = "(unknown)"
	}
	return confirmView{
		Title:          "确认登录 / Confirm login",
		Ask:            true,
		ClientIP:       sc.ClientIP,
		UserAgent:      ua,
		RequestedAt:    sc.CreatedAt.In(beijing).Format("2006-01-02 15:04:05") + " (北京时间 UTC+8)",
		RequestedAtUTC: sc.CreatedAt.UTC().Format(time.RFC3339),
	}
}

func usedView() confirmView {
	return messageView("链接已使用 / Link already used", "这个链接已经用过了。 This link was already used.")
}

func expiredView() confirmView {
	return messageView("已过期 / Expired", "二维码已过期, 请刷新网页后重新扫码。 This code has expired; refresh the page for a new one.")
}

func messageView(title, msg string) confirmView { return confirmView{Title: title, Message: msg} }

// render writes the page with its own CSP: no script at all, one inline
// style allowed by a fresh nonce, the form may post only to us, no framing.
func (p *confirmPage) render(c echo.Context, status int, v confirmView) error {
	v.Nonce = random.Token(16)
	var buf bytes.Buffer
	if err := confirmTemplate.Execute(&buf, v); err != nil {
		return &login.Error{Code: login.EINTERNAL, Message: "cannot render the confirm page", Err: err}
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+v.Nonce+"'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}
