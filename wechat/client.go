// Package wechat adapts silenceper/wechat to wxlogin: QR tickets, the
// callback webhook (signature, AES, parsing, replies), the offline stand-in
// for WeChat's API, and the signed-callback simulator used by demo mode and tests.
//
// It imports silenceper's officialaccount packages directly: importing the
// root package would switch logrus to Debug for the whole process.
package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	"github.com/silenceper/wechat/v2/officialaccount/basic"
	"github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/util"

	"wxlogin/login"
)

// WeChat errcodes we act on.
const (
	ErrCodeQuota        = 45009 // daily API quota reached
	ErrCodeInvalidToken = 40001
	ErrCodeTokenExpired = 42001
	ErrCodeBadToken     = 40014
)

// Config is an Official Account's credentials.
type Config struct {
	AppID     string
	AppSecret string
	Token     string // callback signature token
	AESKey    string // EncodingAESKey, for safe mode
	// Cache holds the access token; nil uses an in-process cache. In a
	// cluster pass a shared (Redis) cache: with the stable token endpoint,
	// instances then share one token instead of invalidating each other's.
	Cache cache.Cache
}

// Client talks to WeChat's API through silenceper.
type Client struct {
	oa    *officialaccount.OfficialAccount
	cache cache.Cache
	log   *slog.Logger

	quotaMu     sync.Mutex
	quotaLogged time.Time
}

// NewClient returns a client for one Official Account.
func NewClient(cfg Config, log *slog.Logger) *Client {
	c := cfg.Cache
	if c == nil {
		c = NewMemoryCache()
	}
	oa := officialaccount.NewOfficialAccount(&config.Config{
		AppID:          cfg.AppID,
		AppSecret:      cfg.AppSecret,
		Token:          cfg.Token,
		EncodingAESKey: cfg.AESKey,
		Cache:          c,
		UseStableAK:    true,
	})
	return &Client{oa: oa, cache: c, log: log}
}

// OfficialAccount is silenceper's handle (the callback server uses it).
func (c *Client) OfficialAccount() *officialaccount.OfficialAccount { return c.oa }

// SetHTTPClient replaces the HTTP client silenceper uses for every call. It
// is process-wide in silenceper, and GetQRTicket takes no context: the
// client's Timeout is what bounds a slow WeChat. Call it once at start.
func SetHTTPClient(hc *http.Client) { util.DefaultHTTPClient = hc }

// IssueQR asks WeChat for a temporary QR_STR_SCENE code (login.QRIssuer).
func (c *Client) IssueQR(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error) {
	qr, code, err := c.issueOnce(sceneID, ttl)
	if isTokenError(code) {
		// silenceper keeps a rejected token in its cache: drop it and retry once.
		c.dropToken()
		qr, code, err = c.issueOnce(sceneID, ttl)
	}
	if err == nil {
		return qr, nil
	}
	if code == ErrCodeQuota {
		c.logQuotaOnce()
		return login.QR{}, &login.Error{Code: login.EQUOTA, Message: "WeChat QR quota reached (errcode 45009); try again later", Err: err}
	}
	c.log.Warn("wechat qrcode/create failed", "errcode", code, "err", err)
	msg := "WeChat is unavailable"
	if code != 0 {
		msg = fmt.Sprintf("WeChat refused the QR request (errcode %d)", code)
	}
	return login.QR{}, &login.Error{Code: login.EWECHAT, Message: msg, Err: err}
}

func (c *Client) issueOnce(sceneID string, ttl time.Duration) (login.QR, int64, error) {
	// NewTmpQrRequest takes a Duration: a bare 120 would be 120 ns.
	t, err := c.oa.GetBasic().GetQRTicket(basic.NewTmpQrRequest(ttl, sceneID))
	var code int64
	if t != nil {
		code = t.ErrCode
	}
	switch {
	case err != nil:
		return login.QR{}, code, errors.New(Scrub(err.Error()))
	case code != 0:
		// An errcode with an empty errmsg comes back with a nil error.
		return login.QR{}, code, fmt.Errorf("qrcode/create: errcode %d", code)
	case t == nil || t.Ticket == "" || t.URL == "":
		return login.QR{}, 0, errors.New("qrcode/create: empty ticket")
	}
	return login.QR{URL: t.URL, Ticket: t.Ticket}, 0, nil
}

func isTokenError(code int64) bool {
	return code == ErrCodeInvalidToken || code == ErrCodeTokenExpired || code == ErrCodeBadToken
}

func (c *Client) dropToken() {
	if m, ok := c.cache.(*MemoryCache); ok {
		m.DeleteMatching("access_token")
		return
	}
	if d, ok := c.cache.(interface{ DeleteMatching(string) }); ok {
		d.DeleteMatching("access_token")
	}
}

// logQuotaOnce logs the quota error at most once a minute, not per request.
func (c *Client) logQuotaOnce() {
	c.quotaMu.Lock()
	defer c.quotaMu.Unlock()
	if time.Since(c.quotaLogged) < time.Minute {
		return
	}
	c.quotaLogged = time.Now()
	c.log.Error("WeChat qrcode/create quota reached (errcode 45009): logins fail until it resets")
}

// Ping checks that an access token can be obtained.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.oa.GetAccessTokenContext(ctx)
	if err != nil {
		return errors.New(Scrub(err.Error()))
	}
	return nil
}

var secretPattern = regexp.MustCompile(`(?i)\b(access_token|appsecret|secret|ticket)=([^&\s"']+)`)

// Scrub removes access tokens and secrets that silenceper puts into error
// messages (its errors embed request URLs).
func Scrub(s string) string {
	return secretPattern.ReplaceAllString(s, "$1=REDACTED")
}

// MemoryCache is a small, race-free cache.Cache (silenceper's cache.Memory
// has a data race in v2.1.10).
type MemoryCache struct {
	mu sync.Mutex
	m  map[string]memoryItem
}

type memoryItem struct {
	v   any
	exp time.Time
}

// NewMemoryCache returns an empty cache.
func NewMemoryCache() *MemoryCache { return &MemoryCache{m: make(map[string]memoryItem)} }

// Get returns a live value or nil.
func (c *MemoryCache) Get(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.m[key]
	if !ok || (!it.exp.IsZero() && time.Now().After(it.exp)) {
		return nil
	}
	return it.v
}

// Set stores a value for timeout (0 = forever).
func (c *MemoryCache) Set(key string, val any, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := memoryItem{v: val}
	if timeout > 0 {
		it.exp = time.Now().Add(timeout)
	}
	c.m[key] = it
	return nil
}

// IsExist reports whether a live value exists.
func (c *MemoryCache) IsExist(key string) bool { return c.Get(key) != nil }

// Delete removes a value.
func (c *MemoryCache) Delete(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	return nil
}

// DeleteMatching removes every key containing sub.
func (c *MemoryCache) DeleteMatching(sub string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.Contains(k, sub) {
			delete(c.m, k)
		}
	}
}
