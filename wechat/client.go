// Package wechat adapts silenceper/wechat to wxlogin: QR tickets, the
// callback webhook (signature, AES, parsing, replies), the offline stand-in
// for WeChat's API, and the signed-callback simulator used by demo mode and tests.
//
// It imports silenceper's officialaccount packages directly: importing the
// root package would switch logrus to Debug for the whole process.
//
// Construction: each type is built by its New function from a Config struct
// (Config, CallbackConfig); nothing is set on it after construction.
package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	"github.com/silenceper/wechat/v2/officialaccount/basic"
	"github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/officialaccount/oauth"
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
	// MaxInFlight caps concurrent QR requests to WeChat (default 64). When
	// WeChat hangs, each request waits for the HTTP client's timeout; the
	// cap keeps those waits from piling up, and the excess fails at once.
	MaxInFlight int
	// Observe, when set, is told each call to WeChat's API: the api
	// ("token", "qrcode/create") and WeChat's errcode in decimal ("0" =
	// success), or NoAnswer (timeout, connection or HTTP error, bad JSON).
	Observe func(api, errcode string)
}

// Client talks to WeChat's API through silenceper.
type Client struct {
	oa       *officialaccount.OfficialAccount
	qr       *basic.Basic // built once: silenceper's GetBasic fills it lazily without a lock
	oauth    *oauth.Oauth // the same for GetOauth
	cache    cache.Cache
	log      *slog.Logger
	inFlight chan struct{}
	observer func(api, errcode string) // Config.Observe

	quotaMu     sync.Mutex
	quotaLogged time.Time
}

// NewClient returns a client for one Official Account.
func NewClient(cfg Config, log *slog.Logger) *Client {
	c := cfg.Cache
	if c == nil {
		c = NewMemoryCache()
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	cl := &Client{cache: c, log: log, inFlight: make(chan struct{}, cfg.MaxInFlight), observer: cfg.Observe}
	cl.oa = officialaccount.NewOfficialAccount(&config.Config{
		AppID:          cfg.AppID,
		AppSecret:      cfg.AppSecret,
		Token:          cfg.Token,
		EncodingAESKey: cfg.AESKey,
		// silenceper stores a token right after fetching it, and only then:
		// that is the one place a successful token call can be seen.
		Cache:       tokenWatch{Cache: c, fetched: func() { cl.observe("token", 0) }},
		UseStableAK: true,
	})
	// OfficialAccount.GetBasic creates its object on first use with no
	// lock, so concurrent first calls race (seen under -race when a new
	// instance got several scene creations at once). Take it here, before
	// the client is shared.
	cl.qr = cl.oa.GetBasic()
	cl.oauth = cl.oa.GetOauth()
	return cl
}

// SafeMode reports whether an AES key is configured (WeChat's safe mode).
func (c *Client) SafeMode() bool { return c.oa.GetContext().EncodingAESKey != "" }

// NoAnswer is Observe's errcode for a call that got no usable answer.
const NoAnswer = "none"

// tokenWatch reports each access token silenceper stores.
type tokenWatch struct {
	cache.Cache
	fetched func()
}

func (t tokenWatch) Set(key string, val any, timeout time.Duration) error {
	err := t.Cache.Set(key, val, timeout)
	if err == nil && strings.Contains(key, "access_token") {
		t.fetched()
	}
	return err
}

func (c *Client) observe(api string, errcode int64) {
	if c.observer != nil {
		c.observer(api, strconv.FormatInt(errcode, 10))
	}
}

func (c *Client) observeNoAnswer(api string) {
	if c.observer != nil {
		c.observer(api, NoAnswer)
	}
}

// OfficialAccount is silenceper's handle (the callback server uses it).
func (c *Client) OfficialAccount() *officialaccount.OfficialAccount { return c.oa }

// apiBase is where silenceper sends API calls (its URLs are constants).
const apiBase = "https://api.weixin.qq.com"

// SetHTTPClient sets the HTTP client silenceper uses for every call to
// WeChat. silenceper keeps it in a package variable, so it is the same for
// every Client of the process and cannot be chosen per Client: call this
// once, at the start of the process, before any Client is used (main does).
// GetQRTicket takes no context: the client's Timeout is what bounds a slow
// WeChat.
func SetHTTPClient(hc *http.Client) { util.DefaultHTTPClient = hc }

// IssueQR asks WeChat for a temporary QR_STR_SCENE code (login.QRIssuer).
//
// How long it can take: the token fetch ends with ctx, and qrcode/create
// (silenceper passes it no context) with the HTTP client's timeout. A
// rejected token is refreshed and the call retried once, unless ctx is
// already done: a browser waits for this answer.
func (c *Client) IssueQR(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error) {
	select {
	case c.inFlight <- struct{}{}:
		defer func() { <-c.inFlight }()
	default:
		c.log.Warn("wechat qrcode/create: too many calls waiting for WeChat; refusing more")
		return login.QR{}, &login.Error{Code: login.EWECHAT, RetryAfter: 5 * time.Second,
			Message: "WeChat is answering slowly; try again in a moment"}
	}
	qr, code, err := c.issueWithToken(ctx, sceneID, ttl)
	if isTokenError(code) && ctx.Err() == nil {
		// silenceper keeps a rejected token in its cache: drop it and retry once.
		c.log.Warn("wechat rejected the access token; fetching a new one", "errcode", code)
		c.dropToken()
		qr, code, err = c.issueWithToken(ctx, sceneID, ttl)
	}
	if err == nil {
		return qr, nil
	}
	if code == ErrCodeQuota {
		c.logQuotaOnce()
		return login.QR{}, &login.Error{Code: login.EQUOTA, Message: "WeChat QR quota reached (errcode 45009); try again later", Err: err}
	}
	c.log.Warn("wechat qrcode/create failed", "errcode", code, "err", err)
	msg := "WeChat is unavailable (no answer from its API); try again in a moment"
	if code != 0 {
		msg = fmt.Sprintf("WeChat refused the QR request (errcode %d)", code)
	}
	return login.QR{}, &login.Error{Code: login.EWECHAT, Message: msg, Err: err}
}

// issueWithToken makes sure a token is cached (fetching it under ctx), then
// asks for the QR code.
func (c *Client) issueWithToken(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, int64, error) {
	if _, err := c.oa.GetAccessTokenContext(ctx); err != nil {
		code, answered := errcodeOf(err)
		if answered {
			c.observe("token", code)
		} else {
			c.observeNoAnswer("token")
		}
		return login.QR{}, code, fmt.Errorf("access token: %s", Scrub(err.Error()))
	}
	return c.issueOnce(sceneID, ttl)
}

func (c *Client) issueOnce(sceneID string, ttl time.Duration) (login.QR, int64, error) {
	// NewTmpQrRequest takes a Duration: a bare 120 would be 120 ns.
	t, err := c.qr.GetQRTicket(basic.NewTmpQrRequest(ttl, sceneID))
	var code int64
	if t != nil {
		code = t.ErrCode
	}
	switch {
	case err != nil && code == 0:
		c.observeNoAnswer("qrcode/create") // timeout, connection, HTTP status or bad JSON
		return login.QR{}, 0, errors.New(Scrub(err.Error()))
	case err != nil:
		c.observe("qrcode/create", code)
		return login.QR{}, code, errors.New(Scrub(err.Error()))
	case code != 0:
		// An errcode with an empty errmsg comes back with a nil error.
		c.observe("qrcode/create", code)
		return login.QR{}, code, fmt.Errorf("qrcode/create: errcode %d", code)
	case t == nil || t.Ticket == "" || t.URL == "":
		c.observeNoAnswer("qrcode/create")
		return login.QR{}, 0, errors.New("qrcode/create: empty ticket")
	}
	c.observe("qrcode/create", 0)
	return login.QR{URL: t.URL, Ticket: t.Ticket}, 0, nil
}

var errcodePattern = regexp.MustCompile(`errcode=(-?\d+)`)

// errcodeOf reads the errcode silenceper puts in its error text; answered
// is false when there is none (the call got no usable answer).
func errcodeOf(err error) (code int64, answered bool) {
	m := errcodePattern.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.ParseInt(m[1], 10, 64)
	return n, perr == nil
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

var secretPattern = regexp.MustCompile(`(?i)\b(access_token|appsecret|secret|ticket|code|openid)=([^&\s"']+)`)

// Scrub removes access tokens, secrets, web-authorisation codes and openids
// that silenceper puts into error messages (its errors embed request URLs).
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
