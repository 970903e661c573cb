package wechat

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/basic"

	"wxlogin/internal/random"
)

// StandIn is an offline stand-in for the parts of WeChat's API that wxlogin
// calls (access tokens, qrcode/create, sns/oauth2/access_token, user/info).
// Demo mode points silenceper at it; it always behaves (tests that need a
// misbehaving WeChat wrap it, see package wechattest).
type StandIn struct {
	mu       sync.Mutex
	tokens   map[string]bool
	webCodes map[string]*webAuthCode // codes of the stand-in's authorisation page
}

// WebAuthCode says who a code of the stand-in's authorisation page stands
// for, and how its exchange goes.
type WebAuthCode struct {
	OpenID   string
	UnionID  string // answered with the exchange when set
	Snapshot bool   // answer is_snapshotuser=1 (WeChat's snapshot page)
}

type webAuthCode struct {
	WebAuthCode
	issued time.Time
	used   bool
}

// webAuthCodeTTL is how long WeChat's authorisation codes live.
const webAuthCodeTTL = 5 * time.Minute

// NewStandIn returns a stand-in that knows no tokens and no codes yet.
func NewStandIn() *StandIn {
	return &StandIn{tokens: make(map[string]bool), webCodes: make(map[string]*webAuthCode)}
}

// ServeHTTP answers WeChat API calls.
func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/cgi-bin/token", "/cgi-bin/stable_token":
		tok := "standin-" + random.String(24)
		s.mu.Lock()
		s.tokens[tok] = true
		s.mu.Unlock()
		writeJSON(w, map[string]any{"access_token": tok, "expires_in": 7200})
	case "/cgi-bin/qrcode/create":
		s.qrCreate(w, r)
	case "/sns/oauth2/access_token":
		s.webAuthExchange(w, r)
	case "/cgi-bin/user/info":
		s.userInfo(w, r)
	case DemoWebAuthCodePath:
		s.demoWebAuthCode(w, r)
	default:
		writeJSON(w, map[string]any{"errcode": 40066, "errmsg": "invalid url"})
	}
}

func (s *StandIn) qrCreate(w http.ResponseWriter, r *http.Request) {
	if !s.knows(r.URL.Query().Get("access_token")) {
		writeJSON(w, map[string]any{"errcode": ErrCodeInvalidToken, "errmsg": "invalid credential, access_token is invalid or not latest"})
		return
	}
	var req basic.Request
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err := json.Unmarshal(body, &req); err != nil || req.ActionName != "QR_STR_SCENE" ||
		req.ActionInfo.Scene.SceneStr == "" || len(req.ActionInfo.Scene.SceneStr) > 64 {
		writeJSON(w, map[string]any{"errcode": 40097, "errmsg": "invalid args"})
		return
	}
	exp := req.ExpireSeconds
	if exp <= 0 {
		exp = 60 // WeChat's default, which a nanosecond Duration silently gets
	}
	ticket := base64.RawURLEncoding.EncodeToString([]byte("standin:" + req.ActionInfo.Scene.SceneStr))
	writeJSON(w, map[string]any{
		"ticket":         ticket,
		"expire_seconds": exp,
		"url":            "http://weixin.qq.com/q/" + ticket,
	})
}

// SceneOfQR returns the scene string encoded in a stand-in QR URL.
func SceneOfQR(qrURL string) (string, bool) {
	i := strings.LastIndex(qrURL, "/")
	raw, err := base64.RawURLEncoding.DecodeString(qrURL[i+1:])
	if err != nil || !strings.HasPrefix(string(raw), "standin:") {
		return "", false
	}
	return strings.TrimPrefix(string(raw), "standin:"), true
}

// InProcessClient returns an HTTP client whose every request is answered by
// h in-process, whatever the host: silenceper's calls to api.weixin.qq.com
// reach the stand-in without a network or a port.
func InProcessClient(h http.Handler, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: inProcessTransport{h}}
}

type inProcessTransport struct{ h http.Handler }

func (t inProcessTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := newBufferedResponse(r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.h.ServeHTTP(w, r)
	}()
	select {
	case <-done:
		return w.response(), nil
	case <-r.Context().Done():
		<-done // the handler watches the same context
		return nil, r.Context().Err()
	}
}

// bufferedResponse is the ResponseWriter of an in-process call: the whole
// answer is kept, then handed back as an *http.Response.
type bufferedResponse struct {
	req    *http.Request
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferedResponse(r *http.Request) *bufferedResponse {
	return &bufferedResponse{req: r, header: make(http.Header)}
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedResponse) response() *http.Response {
	b.WriteHeader(http.StatusOK)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", b.status, http.StatusText(b.status)),
		StatusCode:    b.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        b.header,
		Body:          io.NopCloser(bytes.NewReader(b.body.Bytes())),
		ContentLength: int64(b.body.Len()),
		Request:       b.req,
	}
}

// RedirectClient returns an HTTP client that sends WeChat API calls to base
// (a stand-in served over real HTTP) instead of api.weixin.qq.com.
func RedirectClient(base string, timeout time.Duration) *http.Client {
	u, err := url.Parse(base)
	if err != nil {
		panic("wechat: bad stand-in URL: " + err.Error())
	}
	return &http.Client{Timeout: timeout, Transport: redirectTransport{u}}
}

type redirectTransport struct{ to *url.URL }

func (t redirectTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = t.to.Scheme, t.to.Host, t.to.Host
	return http.DefaultTransport.RoundTrip(r2)
}

func writeJSON(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

// IssueWebAuthCode is what WeChat's authorisation page does when the person
// agrees: a fresh code, good for one exchange within 5 minutes.
func (s *StandIn) IssueWebAuthCode(c WebAuthCode) string {
	code := random.String(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, v := range s.webCodes { // forget dead codes
		if now.Sub(v.issued) > webAuthCodeTTL {
			delete(s.webCodes, k)
		}
	}
	s.webCodes[code] = &webAuthCode{WebAuthCode: c, issued: now}
	return code
}

// webAuthExchange answers sns/oauth2/access_token as WeChat does: 40029 for
// an unknown or expired code, 40163 for a used one.
func (s *StandIn) webAuthExchange(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("grant_type") != "authorization_code" || q.Get("secret") == "" {
		writeJSON(w, map[string]any{"errcode": 40002, "errmsg": "invalid grant_type"})
		return
	}
	s.mu.Lock()
	c := s.webCodes[q.Get("code")]
	var used bool
	if c != nil {
		used, c.used = c.used, true
	}
	s.mu.Unlock()
	switch {
	case c == nil || time.Since(c.issued) > webAuthCodeTTL:
		writeJSON(w, map[string]any{"errcode": ErrCodeInvalidCode, "errmsg": "invalid code"})
	case used:
		writeJSON(w, map[string]any{"errcode": ErrCodeCodeUsed, "errmsg": "code been used"})
	default:
		ans := map[string]any{"access_token": "standin-web-" + random.String(24), "expires_in": 7200,
			"refresh_token": "standin-refresh-" + random.String(24), "openid": c.OpenID, "scope": "snsapi_base"}
		if c.Snapshot {
			ans["is_snapshotuser"] = 1
		}
		if c.UnionID != "" {
			ans["unionid"] = c.UnionID
		}
		writeJSON(w, ans)
	}
}

// userInfo answers cgi-bin/user/info for a follower, with the unionid an
// account bound to an Open Platform account gets (DemoUnionID).
func (s *StandIn) userInfo(w http.ResponseWriter, r *http.Request) {
	openID := r.URL.Query().Get("openid")
	switch {
	case !s.knows(r.URL.Query().Get("access_token")):
		writeJSON(w, map[string]any{"errcode": ErrCodeInvalidToken, "errmsg": "invalid credential"})
	case openID == "":
		writeJSON(w, map[string]any{"errcode": 40003, "errmsg": "invalid openid"})
	default:
		writeJSON(w, map[string]any{"subscribe": 1, "openid": openID, "language": "zh_CN",
			"subscribe_time": time.Now().Unix(), "unionid": DemoUnionID(openID)})
	}
}

// DemoUnionID is the unionid the stand-in gives an openid: stable, and
// plainly not the openid.
func DemoUnionID(openID string) string {
	sum := sha256.Sum256([]byte("standin unionid\x00" + openID))
	return "uDEMO" + hex.EncodeToString(sum[:12])
}

// knows reports whether the stand-in issued the access token.
func (s *StandIn) knows(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[token]
}

// DemoWebAuthCodePath is where the stand-in issues a code of its
// authorisation page: not a WeChat API, but what WeChat's page does when the
// person agrees. Demo mode reaches it through silenceper's HTTP client, the
// one way to the stand-in of this process.
const DemoWebAuthCodePath = "/standin/webauth/code"

func (s *StandIn) demoWebAuthCode(w http.ResponseWriter, r *http.Request) {
	openID := r.URL.Query().Get("openid")
	if openID == "" {
		writeJSON(w, map[string]any{"errcode": 40003, "errmsg": "invalid openid"})
		return
	}
	// As if the demo account were bound to an Open Platform account.
	code := s.IssueWebAuthCode(WebAuthCode{OpenID: openID, UnionID: DemoUnionID(openID)})
	writeJSON(w, map[string]any{"code": code})
}
