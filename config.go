package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"wxlogin/handlers"
	"wxlogin/login"
	"wxlogin/wechat"
)

// config is every setting, read once from the environment (and flags).
type config struct {
	Addr           string
	DB             string
	RedisURL       string
	RedisPrefix    string
	PublicURL      string
	AppID          string
	AppSecret      string
	Token          string
	AESKey         string
	QRTTL          time.Duration
	ConfirmMode    string // auto | link
	LinkKey        string // WXLOGIN_LINK_KEY: signs confirm links; "" = derived from the WeChat secrets
	TrustedProxies []*net.IPNet
	AllowedOrigins []string
	DemoPublic     bool // WXLOGIN_DEMO=1: demo mode may listen beyond loopback
	ReplyTemplate  string
	LogFormat      string // text | json
	SceneRate      int
	MaxStreams     int
	MaxStreamsIP   int
	ShutdownGrace  time.Duration
	BodyTimeout    time.Duration // a request body must arrive whole within this
	Heartbeat      time.Duration
	SweepInterval  time.Duration
	OIDCClients    string        // WXLOGIN_OIDC_CLIENTS: the OpenID Connect client file; "" = provider off (on in demo mode)
	AdminToken     string        // WXLOGIN_ADMIN_TOKEN: turns on /api/v1/admin/; "" = off
	OnUnsubscribe  string        // WXLOGIN_ON_UNSUBSCRIBE: keep | logout
	Methods        login.Methods // WXLOGIN_METHODS
	FollowQR       string        // WXLOGIN_FOLLOW_QR: image of the account's follow QR, shown beside the login code
	AccountName    string        // WXLOGIN_ACCOUNT_NAME: the account the page says to send the code to
	ForwardURL     string        // WXLOGIN_FORWARD_URL: the account's existing handler; "" = none
	ForwardTimeout time.Duration // WXLOGIN_FORWARD_TIMEOUT
	UnionID        bool          // WXLOGIN_UNIONID=1: look up unionids with cgi-bin/user/info
}

// parseMethods reads WXLOGIN_METHODS: a comma-separated subset of qr, code
// and oauth, at least one, each at most once.
func parseMethods(v string) (login.Methods, error) {
	var m login.Methods
	names := splitList(v)
	if len(names) == 0 {
		return m, fmt.Errorf("WXLOGIN_METHODS=%q: want one or more of qr, code, oauth, comma-separated", v)
	}
	for _, name := range names {
		var on *bool
		switch strings.ToLower(name) {
		case "qr":
			on = &m.QR
		case "code":
			on = &m.Code
		case "oauth":
			on = &m.OAuth
		default:
			return m, fmt.Errorf("WXLOGIN_METHODS: %q is not a login method; want qr, code or oauth", name)
		}
		if *on {
			return m, fmt.Errorf("WXLOGIN_METHODS: %q is listed twice", name)
		}
		*on = true
	}
	return m, nil
}

// Demo reports whether demo mode is on: exactly when no AppID is configured.
func (c *config) Demo() bool { return c.AppID == "" }

// demoMode is Demo before the configuration is loaded (main needs it to
// choose where WeChat's API is).
func demoMode(getenv func(string) string) bool {
	return strings.TrimSpace(getenv("WECHAT_APPID")) == ""
}

// loadConfig reads the environment and flags; a bad value is an error that
// names the variable.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	var errs []error
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := str(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 120s", name, v))
			return def
		}
		return d
	}
	num := func(name string, def int) int {
		v := str(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number ≥ 0", name, v))
			return def
		}
		return n
	}

	c.AppID = str("WECHAT_APPID", "")
	c.AppSecret = str("WECHAT_APPSECRET", "")
	c.Token = str("WECHAT_TOKEN", "")
	c.AESKey = str("WECHAT_AES_KEY", "")
	c.DemoPublic = str("WXLOGIN_DEMO", "") == "1"
	defAddr := ":8080"
	if c.Demo() {
		defAddr = "127.0.0.1:8080"
	}
	c.Addr = str("WXLOGIN_ADDR", defAddr)
	c.DB = str("WXLOGIN_DB", "./wxlogin.db")
	c.RedisURL = str("WXLOGIN_REDIS_URL", "")
	c.RedisPrefix = str("WXLOGIN_REDIS_PREFIX", "wxlogin:")
	c.PublicURL = strings.TrimRight(str("WXLOGIN_PUBLIC_URL", ""), "/")
	c.QRTTL = dur("WXLOGIN_QR_TTL", login.DefaultQRTTL)
	c.ConfirmMode = str("WXLOGIN_CONFIRM", "auto")
	c.LinkKey = str("WXLOGIN_LINK_KEY", "")
	c.ReplyTemplate = str("WXLOGIN_REPLY_TEMPLATE", wechat.DefaultReplyTemplate)
	c.LogFormat = str("WXLOGIN_LOG_FORMAT", "text")
	c.SceneRate = num("WXLOGIN_SCENE_RATE", 30)
	c.MaxStreams = num("WXLOGIN_MAX_STREAMS", 15000)
	c.MaxStreamsIP = num("WXLOGIN_MAX_STREAMS_PER_IP", 100)
	c.ShutdownGrace = dur("WXLOGIN_SHUTDOWN_GRACE", 10*time.Second)
	c.BodyTimeout = dur("WXLOGIN_BODY_TIMEOUT", 10*time.Second)
	c.Heartbeat = dur("WXLOGIN_HEARTBEAT", 15*time.Second)
	c.SweepInterval = dur("WXLOGIN_SWEEP_INTERVAL", time.Second)
	c.OIDCClients = str("WXLOGIN_OIDC_CLIENTS", "")
	c.AdminToken = str("WXLOGIN_ADMIN_TOKEN", "")
	c.OnUnsubscribe = str("WXLOGIN_ON_UNSUBSCRIBE", "keep")
	defMethods := "qr"
	if c.Demo() { // the demo shows every way to log in
		defMethods = "qr,code,oauth"
	}
	if m, err := parseMethods(str("WXLOGIN_METHODS", defMethods)); err != nil {
		errs = append(errs, err)
	} else {
		c.Methods = m
	}

	c.FollowQR = str("WXLOGIN_FOLLOW_QR", "")
	c.AccountName = str("WXLOGIN_ACCOUNT_NAME", "")
	if c.AccountName == "" && c.Demo() {
		c.AccountName = "wxlogin 演示公众号 (demo)"
	}
	c.ForwardURL = str("WXLOGIN_FORWARD_URL", "")
	c.ForwardTimeout = dur("WXLOGIN_FORWARD_TIMEOUT", wechat.DefaultForwardTimeout)
	switch v := str("WXLOGIN_UNIONID", "0"); v {
	case "0", "1":
		c.UnionID = v == "1"
	default:
		errs = append(errs, fmt.Errorf("WXLOGIN_UNIONID=%q: want 0 or 1", v))
	}

	fs := flag.NewFlagSet("wxlogin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (WXLOGIN_ADDR)")
	fs.StringVar(&c.DB, "db", c.DB, "bbolt database file (WXLOGIN_DB)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	if c.QRTTL > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("WXLOGIN_QR_TTL=%s: WeChat allows at most 30 days", c.QRTTL))
	}
	if c.ConfirmMode != "auto" && c.ConfirmMode != "link" {
		errs = append(errs, fmt.Errorf("WXLOGIN_CONFIRM=%q: want auto or link", c.ConfirmMode))
	}
	if c.ConfirmMode == "link" && c.PublicURL == "" {
		errs = append(errs, errors.New("WXLOGIN_CONFIRM=link needs WXLOGIN_PUBLIC_URL for the confirm link"))
	}
	if c.LinkKey != "" && len(c.LinkKey) < login.MinLinkKeyLen {
		errs = append(errs, fmt.Errorf("WXLOGIN_LINK_KEY: want at least %d characters of random secret", login.MinLinkKeyLen))
	}
	if c.AdminToken != "" && len(c.AdminToken) < handlers.MinAdminTokenLen {
		errs = append(errs, fmt.Errorf("WXLOGIN_ADMIN_TOKEN: want at least %d characters of random secret (it guards every user's data)", handlers.MinAdminTokenLen))
	}
	if c.OnUnsubscribe != "keep" && c.OnUnsubscribe != "logout" {
		errs = append(errs, fmt.Errorf("WXLOGIN_ON_UNSUBSCRIBE=%q: want keep or logout", c.OnUnsubscribe))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("WXLOGIN_LOG_FORMAT=%q: want text or json", c.LogFormat))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("WXLOGIN_PUBLIC_URL=%q: want an absolute http(s) URL", c.PublicURL))
		}
	}
	if c.RedisURL != "" {
		if _, err := url.Parse(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("WXLOGIN_REDIS_URL: %v", err))
		}
	}
	if c.FollowQR != "" && !imageURL(c.FollowQR) {
		errs = append(errs, fmt.Errorf("WXLOGIN_FOLLOW_QR=%q: want an absolute http(s) URL of an image, or a path starting with /", c.FollowQR))
	}
	if len(c.AccountName) > 64 {
		errs = append(errs, errors.New("WXLOGIN_ACCOUNT_NAME: at most 64 bytes"))
	}
	if c.ForwardURL != "" {
		if _, err := wechat.ParseForwardURL(c.ForwardURL); err != nil {
			errs = append(errs, fmt.Errorf("WXLOGIN_FORWARD_URL: %v", err))
		} else if c.PublicURL != "" && strings.HasPrefix(c.ForwardURL, c.PublicURL+"/wechat/callback") {
			errs = append(errs, errors.New("WXLOGIN_FORWARD_URL is wxlogin's own webhook: messages would go round in a loop"))
		}
	}
	if c.ForwardTimeout > wechat.MaxForwardTimeout {
		errs = append(errs, fmt.Errorf("WXLOGIN_FORWARD_TIMEOUT=%s: at most %s, so WeChat (which waits 5 s) gets an answer", c.ForwardTimeout, wechat.MaxForwardTimeout))
	}
	if !strings.Contains(c.ReplyTemplate, "{count}") {
		errs = append(errs, errors.New("WXLOGIN_REPLY_TEMPLATE must contain {count}"))
	}
	for _, p := range splitList(str("WXLOGIN_TRUSTED_PROXIES", "")) {
		n, err := parseCIDR(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("WXLOGIN_TRUSTED_PROXIES: %q is not an IP or CIDR", p))
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, n)
	}
	for _, o := range splitList(str("WXLOGIN_ALLOWED_ORIGINS", "")) {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			errs = append(errs, fmt.Errorf("WXLOGIN_ALLOWED_ORIGINS: %q is not an origin like https://example.com", o))
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	if c.Demo() {
		if c.AppSecret != "" {
			errs = append(errs, errors.New("WECHAT_APPSECRET is set but WECHAT_APPID is empty"))
		}
		if !c.DemoPublic && !loopbackAddr(c.Addr) {
			errs = append(errs, fmt.Errorf("WXLOGIN_ADDR=%q: demo mode (no WECHAT_APPID) listens on loopback only; set WXLOGIN_DEMO=1 to expose the demo", c.Addr))
		}
	} else {
		if c.AppSecret == "" && (c.Methods.QR || c.Methods.OAuth) {
			errs = append(errs, errors.New("WECHAT_APPSECRET is required with WECHAT_APPID (the qr and oauth login methods call WeChat's API)"))
		}
		if c.Token == "" {
			errs = append(errs, errors.New("WECHAT_TOKEN is required with WECHAT_APPID (the callback signature token)"))
		}
		if c.Methods.OAuth && c.PublicURL == "" {
			errs = append(errs, errors.New("WXLOGIN_METHODS=oauth needs WXLOGIN_PUBLIC_URL: WeChat sends the browser back to WXLOGIN_PUBLIC_URL/api/v1/login/oauth/callback, on the account's web authorisation domain"))
		}
		if c.UnionID && c.AppSecret == "" {
			errs = append(errs, errors.New("WXLOGIN_UNIONID=1 needs WECHAT_APPSECRET (it calls WeChat's user/info)"))
		}
	}
	if c.AESKey != "" && !validAESKey(c.AESKey) {
		errs = append(errs, errors.New("WECHAT_AES_KEY must be the 43-character EncodingAESKey (base64 of 32 bytes, without the trailing =)"))
	}
	errs = append(errs, checkOIDCConfig(c)...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// validAESKey reports whether k is an EncodingAESKey: 43 base64 characters
// that decode to a 32-byte AES key once "=" is added. A wrong key would
// otherwise make every safe-mode message fail with 403.
func validAESKey(k string) bool {
	if len(k) != 43 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k + "=")
	return err == nil && len(b) == 32
}

// imageURL reports whether v can be an <img src>: an absolute http(s) URL or
// a path on wxlogin's own origin.
func imageURL(v string) bool {
	if strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "//") {
		return true
	}
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseCIDR(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, errors.New("bad IP")
		}
		bits := 128
		if ip.To4() != nil {
			ip, bits = ip.To4(), 32
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
	}
	_, n, err := net.ParseCIDR(s)
	return n, err
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
