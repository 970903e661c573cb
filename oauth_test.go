package main

// End-to-end tests of the oauth method (WeChat's web authorisation, inside
// WeChat's browser), through the real service and the demo stand-in, with a
// cookie-keeping HTTP client that follows no redirect by itself, so every
// hop of the chain is checked: our redirect to the authorisation page, the
// page's answer, WeChat's return to our callback, our return to the page.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxlogin/handlers"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// oauthBrowser is one browser: its cookies, no automatic redirects.
type oauthBrowser struct {
	t  *testing.T
	hc *http.Client
}

func newOAuthBrowser(t *testing.T) *oauthBrowser {
	jar, _ := cookiejar.New(nil)
	return &oauthBrowser{t: t, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type oauthScene struct {
	SceneID   string    `json:"scene_id"`
	Secret    string    `json:"secret"`
	OAuthURL  string    `json:"oauth_url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// answer is one response: status, Location and body.
type answer struct {
	status   int
	location string
	body     string
}

func (b *oauthBrowser) do(method, u string, form url.Values) answer {
	b.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50")
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(raw)}
}

func (b *oauthBrowser) createScene(base string) oauthScene {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/login/scenes", nil)
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sc oauthScene
	if err := json.NewDecoder(resp.Body).Decode(&sc); err != nil || resp.StatusCode != http.StatusCreated {
		b.t.Fatalf("create scene: %d %v", resp.StatusCode, err)
	}
	if sc.OAuthURL == "" {
		b.t.Fatalf("scene %+v: no oauth_url with the oauth method on", sc)
	}
	return sc
}

// startOAuth follows the scene's oauth_url (with the scene's cookie) to the
// stand-in's authorisation page and returns the state and redirect URI.
func (b *oauthBrowser) startOAuth(base string, sc oauthScene, returnTo string) (state, redirectURI string) {
	b.t.Helper()
	p := b.do(http.MethodGet, resolve(base, sc.OAuthURL)+"?return_to="+url.QueryEscape(returnTo), nil)
	if p.status != http.StatusFound || !strings.HasPrefix(p.location, handlers.DevAuthorizePath+"?") {
		b.t.Fatalf("oauth_url: %d → %q; want a redirect to the stand-in's authorisation page\n%s", p.status, p.location, p.body)
	}
	loc, _ := url.Parse(p.location)
	q := loc.Query()
	if q.Get("scope") != "snsapi_base" || q.Get("response_type") != "code" || q.Get("appid") != demoAppID {
		b.t.Errorf("authorisation URL %q: want snsapi_base, code, the account's appid", p.location)
	}
	return q.Get("state"), q.Get("redirect_uri")
}

// authorize answers the stand-in's page: allow or refuse.
func (b *oauthBrowser) authorize(base, state, redirectURI, decision, openID string) string {
	b.t.Helper()
	page := b.do(http.MethodGet, base+handlers.DevAuthorizePath+"?"+url.Values{
		"appid": {demoAppID}, "redirect_uri": {redirectURI}, "state": {state}, "scope": {"snsapi_base"}}.Encode(), nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, "Allow") {
		b.t.Fatalf("authorisation page: %d %s", page.status, page.body)
	}
	p := b.do(http.MethodPost, base+handlers.DevAuthorizePath, url.Values{
		"redirect_uri": {redirectURI}, "state": {state}, "openid": {openID}, "decision": {decision}})
	if p.status != http.StatusFound || !strings.HasPrefix(p.location, redirectURI+"?") {
		b.t.Fatalf("authorisation page's answer: %d → %q", p.status, p.location)
	}
	return p.location
}

func resolve(base, u string) string {
	if strings.HasPrefix(u, "/") {
		return base + u
	}
	return u
}

// onInstance points a callback URL at another instance (a load balancer's choice).
func onInstance(callbackURL, base string) string {
	u, _ := url.Parse(callbackURL)
	return base + u.RequestURI()
}

// TestOAuthEndToEnd: the whole chain on bbolt and on Redis; two waiters of
// the scene are both told; WeChat's repeated redirect counts once; /me gives
// the unionid WeChat's exchange returned.
func TestOAuthEndToEnd(t *testing.T) {
	for _, store := range []string{"bolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			env := map[string]string{}
			if store == "redis" {
				env["WXLOGIN_REDIS_URL"] = clusterRedis
				env["WXLOGIN_REDIS_PREFIX"] = newClusterPrefix(t, clusterRedis)
			}
			srv := startTestServer(t, env)
			b := newOAuthBrowser(t)
			sc := b.createScene(srv.URL)

			stream, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
			if stream == nil {
				t.Fatalf("stream: %d", resp.StatusCode)
			}
			defer stream.Close()
			if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
				t.Fatalf("first event %+v", ev)
			}
			polled := make(chan statusView, 1)
			go func() {
				var v statusView
				apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+"?wait=25", sc.Secret, nil, &v)
				polled <- v
			}()
			waitFor(t, 5*time.Second, "the long-poll waits", func() bool {
				return metricValue(t, srv.URL, "wxlogin_long_polls_in_flight") == 1
			})

			const openID = "oOAUTH_e2e_user_0000000001"
			state, redirectURI := b.startOAuth(srv.URL, sc, "/after?x=1#top")
			if redirectURI != srv.URL+handlers.WebAuthCallbackPath {
				t.Errorf("redirect_uri %q; want our callback", redirectURI)
			}
			callback := b.authorize(srv.URL, state, redirectURI, "allow", openID)
			back := b.do(http.MethodGet, callback, nil)
			if back.status != http.StatusFound || back.location != "/after?x=1#top" {
				t.Fatalf("callback: %d → %q; want back to return_to\n%s", back.status, back.location, back.body)
			}
			ev := stream.Next(t, 5*time.Second)
			pushed := decodeView(t, ev.Data)
			if ev.Event != "confirmed" || pushed.Code == "" {
				t.Fatalf("stream got %+v; want confirmed with a code", ev)
			}
			select {
			case v := <-polled:
				if v.Status != "confirmed" || v.Code != pushed.Code {
					t.Fatalf("long-poll got %+v", v)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the long-poll was not told")
			}

			// WeChat's browser follows the redirect a second time.
			again := b.do(http.MethodGet, callback, nil)
			if again.status != http.StatusFound || again.location != "/after?x=1#top" {
				t.Fatalf("repeated callback: %d → %q", again.status, again.location)
			}
			if n := metricValue(t, srv.URL, `wxlogin_oauth_callbacks_total{outcome="confirmed"}`); n != 1 {
				t.Errorf("confirmed callbacks %v; want 1", n)
			}
			if n := metricValue(t, srv.URL, `wxlogin_oauth_callbacks_total{outcome="replayed"}`); n != 1 {
				t.Errorf("replayed callbacks %v; want 1", n)
			}

			r, body := exchange(t, srv.URL, sc.SceneID, sc.Secret, pushed.Code)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("exchange: %d %v", r.StatusCode, body)
			}
			var me struct {
				LoginCount int    `json:"login_count"`
				UnionID    string `json:"unionid"`
				OpenID     string `json:"openid"`
			}
			apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", body["access_token"].(string), nil, &me)
			if me.LoginCount != 1 || me.UnionID != wechat.DemoUnionID(openID) || me.OpenID != "" {
				t.Fatalf("/me %+v; want count 1, the unionid, no openid", me)
			}
			if strings.Contains(srv.Logs.String(), openID) || strings.Contains(srv.Logs.String(), state) {
				t.Errorf("the log holds the openid or the state:\n%s", srv.Logs.String())
			}
		})
	}
}

// TestOAuthCluster: the redirect to WeChat leaves from one instance and
// WeChat's return lands on another; the state lives in Redis, the stream on
// a third instance is told.
func TestOAuthCluster(t *testing.T) {
	prefix := newClusterPrefix(t, clusterRedis)
	nodes := startCluster(t, 3, clusterRedis, prefix, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	br := newOAuthBrowser(t)
	sc := br.createScene(a.URL)
	stream, resp := openStream(t, c.URL, sc.SceneID, sc.Secret, "")
	if stream == nil {
		t.Fatalf("stream on C: %d", resp.StatusCode)
	}
	defer stream.Close()
	stream.Next(t, 5*time.Second)

	state, redirectURI := br.startOAuth(a.URL, sc, "/")
	callback := br.authorize(a.URL, state, redirectURI, "allow", "oOAUTH_cluster_user_000001")
	back := br.do(http.MethodGet, onInstance(callback, b.URL), nil)
	if back.status != http.StatusFound || back.location != "/" {
		t.Fatalf("callback on B: %d → %q\n%s", back.status, back.location, back.body)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("C's stream got %+v", ev)
	}
	// The same return on the third instance is a replay there too.
	again := br.do(http.MethodGet, onInstance(callback, c.URL), nil)
	if again.status != http.StatusFound {
		t.Fatalf("replay on C: %d %s", again.status, again.body)
	}
	if n := metricValue(t, c.URL, `wxlogin_oauth_callbacks_total{outcome="replayed"}`); n != 1 {
		t.Errorf("C counted %v replays; want 1", n)
	}
}

// TestOAuthRefusals: every way the flow can go wrong ends on a clear page
// (never a 500, never WeChat's own text, never a redirect elsewhere) and
// leaves the scene waiting.
func TestOAuthRefusals(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_ALLOWED_ORIGINS": "https://www.example.com"})
	standIn := weChat // the test binary's WeChat (main_test.go)

	t.Run("return_to", func(t *testing.T) {
		b := newOAuthBrowser(t)
		sc := b.createScene(srv.URL)
		for _, rt := range []string{"//evil.example", "/\\evil.example", "https://evil.example/", "javascript:alert(1)",
			"https://www.example.com@evil.example/", "http://www.example.com/", "/\r\nSet-Cookie:x", "\t/evil"} {
			p := b.do(http.MethodGet, resolve(srv.URL, sc.OAuthURL)+"?return_to="+url.QueryEscape(rt), nil)
			if p.status != http.StatusBadRequest || p.location != "" || !strings.Contains(p.body, "return_to") {
				t.Errorf("return_to %q: %d → %q; want a 400 page\n%s", rt, p.status, p.location, p.body)
			}
		}
		p := b.do(http.MethodGet, resolve(srv.URL, sc.OAuthURL)+"?return_to=/a&return_to=//evil.example", nil)
		if p.status != http.StatusBadRequest {
			t.Errorf("two return_to: %d; want 400", p.status)
		}
		// An allowed origin is fine.
		state, _ := b.startOAuth(srv.URL, sc, "https://www.example.com/account")
		if state == "" {
			t.Fatal("no state")
		}
	})

	t.Run("without the scene's secret", func(t *testing.T) {
		owner := newOAuthBrowser(t)
		sc := owner.createScene(srv.URL)
		p := newOAuthBrowser(t).do(http.MethodGet, resolve(srv.URL, sc.OAuthURL), nil)
		if p.status != http.StatusUnauthorized || p.location != "" {
			t.Fatalf("oauth_url from another browser: %d → %q", p.status, p.location)
		}
	})

	withCode := func(c wechattest.WebAuthCode) func(string) url.Values {
		code := standIn.IssueWebAuthCode(c)
		return func(state string) url.Values { return url.Values{"code": {code}, "state": {state}} }
	}
	used := standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "oUsedOnce"})
	for _, tc := range []struct {
		name     string
		browser  func(owner *oauthBrowser) *oauthBrowser
		query    func(state string) url.Values
		status   int
		outcome  string
		wantBack bool
	}{
		{"declined", nil, func(state string) url.Values { return url.Values{"state": {state}} },
			http.StatusOK, "refused", true},
		{"snapshot page", nil, withCode(wechattest.WebAuthCode{OpenID: "oVirtualSnapshot", Snapshot: true}),
			http.StatusForbidden, "snapshot", true},
		{"unknown code (40029)", nil, func(state string) url.Values { return url.Values{"code": {"NoSuchCode0123"}, "state": {state}} },
			http.StatusBadRequest, "code_rejected", true},
		{"first use of a code", nil, func(state string) url.Values { return url.Values{"code": {used}, "state": {state}} },
			http.StatusFound, "confirmed", false},
		{"code used again (40163)", nil, func(state string) url.Values { return url.Values{"code": {used}, "state": {state}} },
			http.StatusBadRequest, "code_rejected", true},
		{"quota", nil, withCode(wechattest.WebAuthCode{OpenID: "oQuota", ErrCode: wechat.ErrCodeQuota}),
			http.StatusServiceUnavailable, "wechat_quota", true},
		{"other error", nil, withCode(wechattest.WebAuthCode{OpenID: "oErr", ErrCode: 40125}),
			http.StatusServiceUnavailable, "wechat_error", true},
		{"code with a URL in it", nil, func(state string) url.Values { return url.Values{"code": {"a&secret=b"}, "state": {state}} },
			http.StatusBadRequest, "bad_code", true},
		{"forged state", nil, func(string) url.Values {
			return url.Values{"code": {"x"}, "state": {"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"}}
		},
			http.StatusBadRequest, "bad_state", false},
		{"another browser", func(*oauthBrowser) *oauthBrowser { return newOAuthBrowser(t) },
			withCode(wechattest.WebAuthCode{OpenID: "oVictim"}), http.StatusForbidden, "wrong_browser", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, srv.URL, `wxlogin_oauth_callbacks_total{outcome="`+tc.outcome+`"}`)
			owner := newOAuthBrowser(t)
			sc := owner.createScene(srv.URL)
			state, redirectURI := owner.startOAuth(srv.URL, sc, "/again")
			finisher := owner
			if tc.browser != nil {
				finisher = tc.browser(owner)
			}
			p := finisher.do(http.MethodGet, redirectURI+"?"+tc.query(state).Encode(), nil)
			if p.status != tc.status {
				t.Fatalf("status %d; want %d\n%s", p.status, tc.status, p.body)
			}
			if after := metricValue(t, srv.URL, `wxlogin_oauth_callbacks_total{outcome="`+tc.outcome+`"}`); after != before+1 {
				t.Errorf("outcome %s counted %v → %v", tc.outcome, before, after)
			}
			if tc.status == http.StatusFound {
				return
			}
			if p.location != "" {
				t.Errorf("redirected to %q; want a page", p.location)
			}
			if got := strings.Contains(p.body, `href="/again"`); got != tc.wantBack {
				t.Errorf("a way back: %v; want %v\n%s", got, tc.wantBack, p.body)
			}
			if strings.Contains(p.body, "stand-in fault") || strings.Contains(p.body, "errmsg") {
				t.Errorf("the page shows WeChat's text:\n%s", p.body)
			}
			if v := pollScene(t, srv.URL, sceneInfo{SceneID: sc.SceneID, Secret: sc.Secret}); v.Status != "pending" {
				t.Errorf("scene %s; want it still pending", v.Status)
			}
		})
	}
	if logs := srv.Logs.String(); strings.Contains(logs, "secret=demo-secret") || strings.Contains(logs, used) {
		t.Errorf("the log holds the app secret or a code:\n%s", logs)
	}
}

// TestUnionIDForScans: with WXLOGIN_UNIONID=1 a scan's user gets WeChat's
// unionid from user/info after the login; a user/info that hangs does not
// slow the scan's reply.
func TestUnionIDForScans(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_UNIONID": "1"})
	standIn := weChat // the test binary's WeChat (main_test.go)
	login := func(openID string) (time.Duration, string) {
		sc := createScene(t, srv.URL)
		began := time.Now()
		r, err := simulatorFor(srv).Send(context.Background(), wechat.ScanEvent(sc.SceneID, openID, false, time.Now()))
		took := time.Since(began)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("scan: %+v %v", r, err)
		}
		v := pollScene(t, srv.URL, sc)
		resp, body := exchange(t, srv.URL, sc.SceneID, sc.Secret, v.Code)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("exchange: %d %v", resp.StatusCode, body)
		}
		return took, body["access_token"].(string)
	}
	unionOf := func(token string) string {
		var me struct {
			UnionID *string `json:"unionid"`
		}
		apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", token, nil, &me)
		if me.UnionID == nil {
			return ""
		}
		return *me.UnionID
	}

	standIn.SetFault(wechattest.Fault{UserInfoDelay: 10 * time.Second})
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })
	took, token := login("oUNION_outage_000000000001")
	if took > time.Second {
		t.Errorf("scan answered after %s with user/info hanging; want under 1 s", took)
	}
	if u := unionOf(token); u != "" {
		t.Errorf("unionid %q during the outage; want none (omitted)", u)
	}
	waitFor(t, 10*time.Second, "the failed lookup is counted", func() bool {
		return metricOrZero(t, srv.URL, `wxlogin_wechat_api_calls_total{api="user/info",errcode="none"}`) >= 1
	})

	standIn.SetFault(wechattest.Fault{})
	const openID = "oUNION_healthy_00000000001"
	_, token = login(openID)
	waitFor(t, 5*time.Second, "the unionid is kept", func() bool { return unionOf(token) == wechat.DemoUnionID(openID) })
}

// TestOAuthConfig: the oauth method needs WXLOGIN_PUBLIC_URL with a real
// account (WeChat's return address); demo mode answers on its own address.
func TestOAuthConfig(t *testing.T) {
	real := map[string]string{"WECHAT_APPID": "wx1234", "WECHAT_APPSECRET": "s", "WECHAT_TOKEN": "t", "WXLOGIN_ADDR": "127.0.0.1:0"}
	for _, tc := range []struct {
		name, wantErr string
		env           map[string]string
	}{
		{"oauth without a public URL", "WXLOGIN_PUBLIC_URL", with(real, "WXLOGIN_METHODS", "qr,oauth")},
		{"oauth with a public URL", "", with(with(real, "WXLOGIN_METHODS", "oauth"), "WXLOGIN_PUBLIC_URL", "https://login.example.com")},
		{"demo needs none", "", map[string]string{"WXLOGIN_ADDR": "127.0.0.1:0"}},
		{"unionid takes 0 or 1", "WXLOGIN_UNIONID", with(real, "WXLOGIN_UNIONID", "yes")},
		{"unionid needs the secret", "WXLOGIN_UNIONID", with(with(with(real, "WECHAT_APPSECRET", ""), "WXLOGIN_METHODS", "code"), "WXLOGIN_UNIONID", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(nil, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr == "" {
				if err != nil || !cfg.Methods.OAuth {
					t.Fatalf("%v (methods %+v); want oauth on", err, cfg.Methods)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v; want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestOAuthStartRateLimited: each start stores a state, so one address gets
// the scene-creation budget (WXLOGIN_SCENE_RATE) for starts as well.
func TestOAuthStartRateLimited(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_SCENE_RATE": "2"})
	b := newOAuthBrowser(t)
	sc := b.createScene(srv.URL)
	for i := range 2 {
		if p := b.do(http.MethodGet, resolve(srv.URL, sc.OAuthURL), nil); p.status != http.StatusFound {
			t.Fatalf("start %d: %d", i+1, p.status)
		}
	}
	p := b.do(http.MethodGet, resolve(srv.URL, sc.OAuthURL), nil)
	if p.status != http.StatusTooManyRequests || p.location != "" {
		t.Fatalf("third start in a minute: %d → %q; want a 429 page", p.status, p.location)
	}
}

// TestOAuthStateExpiresWithTheScene: a return after the scene's end logs
// nobody in, even with a good code.
func TestOAuthStateExpiresWithTheScene(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_QR_TTL": "1s"})
	b := newOAuthBrowser(t)
	sc := b.createScene(srv.URL)
	state, redirectURI := b.startOAuth(srv.URL, sc, "/")
	code := weChat.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "oLate"})
	time.Sleep(time.Until(sc.ExpiresAt) + 50*time.Millisecond) // the scene's end is the condition
	p := b.do(http.MethodGet, redirectURI+"?"+url.Values{"code": {code}, "state": {state}}.Encode(), nil)
	if p.status != http.StatusBadRequest || p.location != "" {
		t.Fatalf("late return: %d → %q; want the invalid-link page", p.status, p.location)
	}
	if n := metricValue(t, srv.URL, `wxlogin_oauth_callbacks_total{outcome="bad_state"}`); n != 1 {
		t.Errorf("bad_state %v; want 1", n)
	}
}

// TestOAuthInConfirmMode: web authorisation confirms at once even in confirm
// mode — it starts and ends in the browser holding the scene, so it is not
// the phishing the confirm page guards scans against (and no WeChat message
// would carry the link). A start authorised by the secret as Bearer works too.
func TestOAuthInConfirmMode(t *testing.T) {
	const public = "https://login.example.com"
	srv := startTestServer(t, map[string]string{"WXLOGIN_CONFIRM": "link", "WXLOGIN_PUBLIC_URL": public})
	b := newOAuthBrowser(t)
	sc := b.createScene(srv.URL)
	stream, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	if stream == nil {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	defer stream.Close()
	stream.Next(t, 5*time.Second)

	// The app holds the secret, not the cookie.
	req, _ := http.NewRequest(http.MethodGet, onInstance(sc.OAuthURL, srv.URL)+"?return_to=/", nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	start, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	start.Body.Close()
	loc, _ := url.Parse(start.Header.Get("Location"))
	state, redirectURI := loc.Query().Get("state"), loc.Query().Get("redirect_uri")
	if start.StatusCode != http.StatusFound || redirectURI != public+handlers.WebAuthCallbackPath {
		t.Fatalf("start with Bearer: %d, redirect_uri %q; want WXLOGIN_PUBLIC_URL's callback", start.StatusCode, redirectURI)
	}
	// WeChat would send the browser to the public host; a proxy there
	// reaches this server. The binding cookie (Secure: localhost counts as
	// secure, as in browsers) goes along.
	u, _ := url.Parse(srv.URL + handlers.WebAuthCallbackPath)
	var binding *http.Cookie
	for _, ck := range b.hc.Jar.Cookies(u) {
		if ck.Name == "wxl_oa_"+state {
			binding = ck
		}
	}
	if binding == nil {
		t.Fatal("no binding cookie after the start")
	}
	code := weChat.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "oConfirmMode"})
	cb, _ := http.NewRequest(http.MethodGet, srv.URL+handlers.WebAuthCallbackPath+"?"+url.Values{"code": {code}, "state": {state}}.Encode(), nil)
	cb.AddCookie(&http.Cookie{Name: binding.Name, Value: binding.Value})
	back, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(cb)
	if err != nil {
		t.Fatal(err)
	}
	back.Body.Close()
	if back.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d", back.StatusCode)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("stream got %+v; want confirmed without a confirm page", ev)
	}
}
