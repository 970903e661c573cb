package wechat

import (
	"crypto/rand"
	"encoding/base64"
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
	mu     sync.Mutex
	tokens map[string]bool
	fault  Fault

	QRCalls    atomic.Int64
	TokenCalls atomic.Int64
}

// Fault makes the stand-in misbehave.
type Fault struct {
	Delay      time.Duration // before answering qrcode/create
	QRErrCode  int64         // answer qrcode/create with this errcode
	QRErrMsg   string        // and this errmsg (may be empty, as WeChat sometimes does)
	HTTPStatus int           // answer qrcode/create with this HTTP status
	// RejectTokens makes qrcode/create answer 40001 for every token issued so far.
	RejectTokens bool
}

// NewStandIn returns a stand-in with no faults.
func NewStandIn() *StandIn { return &StandIn{tokens: make(map[string]bool)} }

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
