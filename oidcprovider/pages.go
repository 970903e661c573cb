package oidcprovider

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"

	"github.com/labstack/echo/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"wxlogin/login"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pages = template.Must(template.ParseFS(pageFiles, "pages/*.html"))

var (
	bodyTag      = regexp.MustCompile(`<body([^>]*)>`)
	titleElement = regexp.MustCompile(`(?s)<title>.*?</title>`)
	h1Element    = regexp.MustCompile(`(?s)<h1>.*?</h1>`)
	relativeRef  = regexp.MustCompile(`\b(href|src)="([A-Za-z][^":]*)"`)
)

// loginPageTemplate makes the login page from the demo page (static's
// index.html), so that the OIDC login offers exactly what the demo page
// offers — the QR code and every other login method that is on —, titled
// with the client's name, with its relative links made absolute (it is served
// under /api/v1/oidc/login/), and with the address to go on to once logged in
// (demo.js reads data-base, data-continue and data-resume).
func loginPageTemplate(demoPage []byte) (*template.Template, error) {
	page := string(demoPage)
	if !bodyTag.MatchString(page) {
		return nil, errors.New("the demo page has no <body> to make the login page from")
	}
	page = bodyTag.ReplaceAllString(page, `<body$1 data-base="{{.Base}}" data-continue="{{.Continue}}" data-resume="0">`)
	page = titleElement.ReplaceAllString(page, `<title>登录到 {{.ClientName}} · Log in to {{.ClientName}}</title>`)
	page = h1Element.ReplaceAllString(page, `<h1>微信登录到 {{.ClientName}}<span class="en">Log in to {{.ClientName}} with WeChat</span></h1>`)
	page = relativeRef.ReplaceAllString(page, `$1="{{.Base}}/$2"`)
	return template.New("login").Parse(page)
}

// pageCSP is the demo page's policy: our own scripts, styles and images
// only, never framed.
const pageCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

func (p *Provider) render(c echo.Context, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	p.pageHeaders(c)
	return c.HTMLBlob(status, buf.Bytes())
}

func (p *Provider) pageHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

type messagePage struct {
	Base, Title, Message, Status, Tone string
}

func (p *Provider) errorPage(c echo.Context, status int, msg string) error {
	return p.render(c, status, "message.html", messagePage{Base: p.cfg.Issuer,
		Title: "无法登录 · Cannot log in", Message: msg, Status: "error", Tone: "bad"})
}

// login is the authorization request's interaction (its LoginURL). The
// browser must be the one that called /authorize. With a wxlogin session
// that the request accepts (single sign-on) the request is finished at once
// and the browser goes back to the client with a code; with prompt=none and
// no such session the client gets login_required; otherwise the QR page is
// shown, and after the scan and exchange it comes back here.
func (p *Provider) login(c echo.Context) error {
	id := c.Param("id")
	ck, err := c.Cookie(bindCookiePrefix + id)
	if err != nil || !p.macOK("bind", id, ck.Value) {
		return p.errorPage(c, http.StatusBadRequest,
			"这个登录请求不是在此浏览器中发起的, 或已过期。请回到应用重新登录。 This login request was not started in this browser, or it has expired: go back to the application and log in again.")
	}
	ctx := op.ContextWithIssuer(c.Request().Context(), p.cfg.Issuer)
	r := c.Request().WithContext(ctx)
	w := c.Response().Writer
	a, err := p.store.authRequest(ctx, id)
	if errors.Is(err, login.ErrNotFound) {
		return p.errorPage(c, http.StatusBadRequest,
			"这个登录请求已过期。请回到应用重新登录。 This login request has expired: go back to the application and log in again.")
	}
	if err != nil {
		return err
	}
	if a.Finished {
		if a.CodeIssued {
			return p.errorPage(c, http.StatusBadRequest,
				"这个登录请求已完成。 This login request is already finished: go back to the application.")
		}
		p.unbind(c, id)
		op.AuthResponse(a, p.op, w, r)
		return nil
	}
	sess, err := p.session(c)
	if err != nil && !errors.Is(err, errNoSession) {
		return err
	}
	if sess != nil && a.sessionSatisfies(sess, p.cfg.Now()) {
		// A concurrent visit (a reload) may have finished it first: then
		// whichever of the two gets to issue the code does.
		if err := p.store.finish(ctx, id, sess); err != nil && login.ErrorCode(err) != login.ECONFLICT {
			return err
		}
		if a, err = p.store.authRequest(ctx, id); err != nil {
			return err
		}
		p.unbind(c, id)
		op.AuthResponse(a, p.op, w, r)
		return nil
	}
	if a.promptNone() {
		p.unbind(c, id)
		op.AuthRequestError(w, r, a, oidc.ErrLoginRequired(), p.op)
		return nil
	}
	name := a.ClientID
	if cl, ok := p.clients[a.ClientID]; ok {
		name = cl.cfg.Name
	}
	var buf bytes.Buffer
	err = p.loginPage.Execute(&buf, struct{ Base, ClientName, Continue string }{
		Base: p.cfg.Issuer, ClientName: name, Continue: p.loginURL(id)})
	if err != nil {
		return err
	}
	p.pageHeaders(c)
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// unbind removes the binding cookie of a request that goes back to its
// client now: with single sign-on a browser passes through many requests, and
// their cookies would pile up for half an hour (and a long Cookie header is
// refused with 431).
func (p *Provider) unbind(c echo.Context, id string) {
	c.SetCookie(p.bindCookie(id, -1))
}

// session is the browser's live wxlogin session, errNoSession when there is none.
func (p *Provider) session(c echo.Context) (*login.Session, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, errNoSession
	}
	s, err := p.cfg.Users.Session(c.Request().Context(), login.HashToken(ck.Value))
	if errors.Is(err, login.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	if !p.cfg.Now().Before(s.ExpiresAt) {
		return nil, errNoSession
	}
	return s, nil
}

// logout ends the wxlogin session of this browser (RP-initiated logout: op
// validated the request and sent the browser here) and goes on to the
// client's post_logout_redirect_uri, which only op's validation can have
// signed.
func (p *Provider) logout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil && ck.Value != "" {
		if err := p.cfg.EndSession(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: sessionCookiePath, MaxAge: -1,
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteStrictMode})
	next := c.QueryParam("next")
	if next != "" && p.macOK("logout", next, c.QueryParam("sig")) {
		if u, err := url.Parse(next); err == nil && u.IsAbs() {
			return c.Redirect(http.StatusFound, next)
		}
	}
	return p.render(c, http.StatusOK, "message.html", messagePage{Base: p.cfg.Issuer,
		Title: "已退出 · Logged out", Message: "你已退出 wxlogin。 You are logged out of wxlogin.", Status: "logged-out", Tone: "ok"})
}

// demoPage is demo mode's relying party (static/oidc-demo.js does the work).
func (p *Provider) demoPage(c echo.Context) error {
	return p.render(c, http.StatusOK, "demo.html", struct{ Base, Issuer, ClientID, RedirectURI string }{
		Base: p.cfg.Issuer, Issuer: p.cfg.Issuer, ClientID: DemoClientID, RedirectURI: p.cfg.Issuer + DemoPath})
}
