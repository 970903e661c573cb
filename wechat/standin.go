package wechat

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/basic"
	"github.com/silenceper/wechat/v2/util"
)

// StandIn is an offline stand-in for the parts of WeChat's API that wxlogin
// calls (access tokens and qrcode/create). Demo mode and tests point
// silenceper at it; faults can be injected to test a misbehaving WeChat.
type StandIn struct {
	mu       sync.Mutex
	tokens   map[string]bool
	fault    Fault
	webCodes map[string]*webAuthCode // codes of the stand-in's authorisation page

	QRCalls       atomic.Int64
	TokenCalls    atomic.Int64
	WebAuthCalls  atomic.Int64 // sns/oauth2/access_token
	UserInfoCalls atomic.Int64
}

// WebAuthCode says who a code of the stand-in's authorisation page stands
// for, and how its exchange goes.
type WebAuthCode struct {
	OpenID   string
	UnionID  string // answered with the exchange when set
	Snapshot bool   // answer is_snapshotuser=1 (WeChat's snapshot page)
	ErrCode  int64  // answer the exchange with this errcode instead
}

type webAuthCode struct {
	WebAuthCode
	issued time.Time
	used   bool
}

// webAuthCodeTTL is how long WeChat's authorisation codes live.
const webAuthCodeTTL = 5 * time.Minute

// Fault makes the stand-in misbehave.
type Fault struct {
	Delay      time.Duration // before answering qrcode/create
	QRErrCode  int64         // answer qrcode/create with this errcode
	QRErrMsg   string        // and this errmsg (may be empty, as WeChat sometimes does)
	HTTPStatus int           // answer qrcode/create with this HTTP status
	// RejectTokens makes qrcode/create answer 40001 for every token issued so far.
	RejectTokens bool
	// UserInfoDelay and UserInfoErrCode make cgi-bin/user/info slow or failing.
	UserInfoDelay   time.Duration
	UserInfoErrCode int64
}

// NewStandIn returns a stand-in with no faults.
func NewStandIn() *StandIn {
	return &StandIn{tokens: make(map[string]bool), webCodes: make(map[string]*webAuthCode)}
}

// SetFault changes how the stand-in misbehaves (the zero Fault heals it).
func (s *StandIn) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	if f.RejectTokens {
		clear(s.tokens)
	}
}

// ServeHTTP answers WeChat API calls.
func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/cgi-bin/token", "/cgi-bin/stable_token":
		s.TokenCalls.Add(1)
		tok := "standin-" + randomString(24)
		s.mu.Lock()
		s.tokens[tok] = true
		s.mu.Unlock()
		writeJSON(w, map[string]any{"access_token": tok, "expires_in": 7200})
	case "/cgi-bin/qrcode/create":
		s.QRCalls.Add(1)
		s.qrCreate(w, r)
	case "/sns/oauth2/access_token":
		s.WebAuthCalls.Add(1)
		s.webAuthExchange(w, r)
	case "/cgi-bin/user/info":
		s.UserInfoCalls.Add(1)
		s.userInfo(w, r)
	default:
		writeJSON(w, map[string]any{"errcode": 40066, "errmsg": "invalid url"})
	}
}

func (s *StandIn) qrCreate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.fault
	known := s.tokens[r.URL.Query().Get("access_token")]
	s.mu.Unlock()
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case f.HTTPStatus != 0:
		w.WriteHeader(f.HTTPStatus)
		return
	case f.QRErrCode != 0:
		writeJSON(w, map[string]any{"errcode": f.QRErrCode, "errmsg": f.QRErrMsg})
		return
	case !known:
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
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.h.ServeHTTP(rec, r)
	}()
	select {
	case <-done:
		return rec.Result(), nil
	case <-r.Context().Done():
		<-done // the stand-in watches the same context
		return nil, r.Context().Err()
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

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

var (
	demoOnce    sync.Once
	demoStandIn *StandIn
)

// UseDemoStandIn points silenceper at one process-wide in-process stand-in
// (silenceper's HTTP client is a global: several demo instances in one
// process share it). It returns that stand-in.
func UseDemoStandIn(timeout time.Duration) *StandIn {
	demoOnce.Do(func() {
		demoStandIn = NewStandIn()
		SetHTTPClient(InProcessClient(demoStandIn, timeout))
	})
	return demoStandIn
}

// UseTimeout gives silenceper's HTTP client a timeout, unless a client was
// already installed (tests install one pointing at a stand-in).
func UseTimeout(timeout time.Duration) {
	if util.DefaultHTTPClient == http.DefaultClient {
		SetHTTPClient(&http.Client{Timeout: timeout})
	}
}

// IssueWebAuthCode is what WeChat's authorisation page does when the person
// agrees: a fresh code, good for one exchange within 5 minutes.
func (s *StandIn) IssueWebAuthCode(c WebAuthCode) string {
	code := randomString(32)
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
	case c.ErrCode != 0:
		writeJSON(w, map[string]any{"errcode": c.ErrCode, "errmsg": "stand-in fault"})
	default:
		ans := map[string]any{"access_token": "standin-web-" + randomString(24), "expires_in": 7200,
			"refresh_token": "standin-refresh-" + randomString(24), "openid": c.OpenID, "scope": "snsapi_base"}
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
	s.mu.Lock()
	f := s.fault
	known := s.tokens[r.URL.Query().Get("access_token")]
	s.mu.Unlock()
	if f.UserInfoDelay > 0 {
		select {
		case <-time.After(f.UserInfoDelay):
		case <-r.Context().Done():
			return
		}
	}
	openID := r.URL.Query().Get("openid")
	switch {
	case f.UserInfoErrCode != 0:
		writeJSON(w, map[string]any{"errcode": f.UserInfoErrCode, "errmsg": "stand-in fault"})
	case !known:
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
