// Package wechattest plays a misbehaving WeChat for tests: WeChat wraps the
// demo stand-in, counts the calls that reach it and, when told to, answers
// slowly, with HTTP errors or with errcodes instead of it. The production
// stand-in (wechat.StandIn) has no fault paths; they all live here.
//
// Construction: New; faults are changed at run time with SetFault.
package wechattest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"wxlogin/wechat"
)

// Fault makes WeChat misbehave. The zero Fault is a healthy WeChat.
type Fault struct {
	Delay      time.Duration // before answering qrcode/create
	QRErrCode  int64         // answer qrcode/create with this errcode
	QRErrMsg   string        // and this errmsg (may be empty, as WeChat sometimes does)
	HTTPStatus int           // answer qrcode/create with this HTTP status
	// RejectTokens makes WeChat forget every access token issued so far:
	// qrcode/create and user/info answer 40001 for them from now on, even
	// after the fault is cleared (as when WeChat invalidates tokens).
	RejectTokens bool
	// UserInfoDelay and UserInfoErrCode make cgi-bin/user/info slow or failing.
	UserInfoDelay   time.Duration
	UserInfoErrCode int64
}

// WebAuthCode is a code of the stand-in's authorisation page, possibly one
// whose exchange fails.
type WebAuthCode struct {
	OpenID   string
	UnionID  string // answered with the exchange when set
	Snapshot bool   // answer is_snapshotuser=1 (WeChat's snapshot page)
	ErrCode  int64  // answer the exchange with this errcode instead
}

// WeChat is the stand-in behind a switch of faults; an http.Handler to hand
// to wechat.InProcessClient or an httptest server.
type WeChat struct {
	standIn *wechat.StandIn

	mu        sync.Mutex
	fault     Fault
	issued    map[string]bool  // access tokens seen going out
	forgotten map[string]bool  // tokens issued before a RejectTokens
	failing   map[string]int64 // authorisation codes whose exchange fails

	QRCalls       atomic.Int64 // cgi-bin/qrcode/create
	TokenCalls    atomic.Int64 // cgi-bin/token and cgi-bin/stable_token
	WebAuthCalls  atomic.Int64 // sns/oauth2/access_token
	UserInfoCalls atomic.Int64 // cgi-bin/user/info
}

// New returns a healthy WeChat played by a fresh stand-in.
func New() *WeChat {
	return &WeChat{standIn: wechat.NewStandIn(), issued: make(map[string]bool),
		forgotten: make(map[string]bool), failing: make(map[string]int64)}
}

// SetFault changes how WeChat misbehaves (the zero Fault heals it).
func (w *WeChat) SetFault(f Fault) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fault = f
	if f.RejectTokens {
		for tok := range w.issued {
			w.forgotten[tok] = true
		}
		clear(w.issued)
	}
}

// IssueWebAuthCode is what WeChat's authorisation page does when the person
// agrees: a fresh code, good for one exchange within 5 minutes (or, with
// ErrCode, one whose exchange is answered with that errcode).
func (w *WeChat) IssueWebAuthCode(c WebAuthCode) string {
	code := w.standIn.IssueWebAuthCode(wechat.WebAuthCode{OpenID: c.OpenID, UnionID: c.UnionID, Snapshot: c.Snapshot})
	if c.ErrCode != 0 {
		w.mu.Lock()
		w.failing[code] = c.ErrCode
		w.mu.Unlock()
	}
	return code
}

// ServeHTTP answers a WeChat API call: the fault's answer, or the stand-in's.
func (w *WeChat) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	f := w.fault
	forgotten := w.forgotten[r.URL.Query().Get("access_token")]
	failing := w.failing[r.URL.Query().Get("code")]
	w.mu.Unlock()
	switch r.URL.Path {
	case "/cgi-bin/token", "/cgi-bin/stable_token":
		w.TokenCalls.Add(1)
		w.recordToken(rw, r)
		return
	case "/cgi-bin/qrcode/create":
		w.QRCalls.Add(1)
		if !wait(r, f.Delay) {
			return
		}
		switch {
		case f.HTTPStatus != 0:
			rw.WriteHeader(f.HTTPStatus)
			return
		case f.QRErrCode != 0:
			writeJSON(rw, map[string]any{"errcode": f.QRErrCode, "errmsg": f.QRErrMsg})
			return
		case forgotten:
			writeJSON(rw, map[string]any{"errcode": wechat.ErrCodeInvalidToken, "errmsg": "invalid credential, access_token is invalid or not latest"})
			return
		}
	case "/sns/oauth2/access_token":
		w.WebAuthCalls.Add(1)
		if failing != 0 {
			writeJSON(rw, map[string]any{"errcode": failing, "errmsg": "stand-in fault"})
			return
		}
	case "/cgi-bin/user/info":
		w.UserInfoCalls.Add(1)
		if !wait(r, f.UserInfoDelay) {
			return
		}
		switch {
		case f.UserInfoErrCode != 0:
			writeJSON(rw, map[string]any{"errcode": f.UserInfoErrCode, "errmsg": "stand-in fault"})
			return
		case forgotten:
			writeJSON(rw, map[string]any{"errcode": wechat.ErrCodeInvalidToken, "errmsg": "invalid credential"})
			return
		}
	}
	w.standIn.ServeHTTP(rw, r)
}

// recordToken lets the stand-in issue a token and notes it, so that a
// later RejectTokens can forget it.
func (w *WeChat) recordToken(rw http.ResponseWriter, r *http.Request) {
	rec := &capture{ResponseWriter: rw}
	w.standIn.ServeHTTP(rec, r)
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(rec.body.Bytes(), &ans) == nil && ans.AccessToken != "" {
		w.mu.Lock()
		w.issued[ans.AccessToken] = true
		w.mu.Unlock()
	}
}

// capture passes an answer on and keeps a copy of its body.
type capture struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (c *capture) Write(p []byte) (int, error) {
	c.body.Write(p)
	return c.ResponseWriter.Write(p)
}

// wait sleeps d unless the request ends first; false when it ended.
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
