package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"wxlogin/events"
	"wxlogin/handlers"
	"wxlogin/internal/random"
	"wxlogin/login"
	"wxlogin/metrics"
	"wxlogin/static"
	"wxlogin/storage"
	"wxlogin/wechat"
)

// app is the wired service.
type app struct {
	handler http.Handler
	hub     *events.Hub
	store   login.Store
	svc     *login.Service
	// forwarder passes non-login messages to the account's handler (nil
	// without WXLOGIN_FORWARD_URL); shutdown waits for its background forwards.
	forwarder *wechat.Forwarder
	stopBg    context.CancelFunc
	bg        sync.WaitGroup
	closers   []func() error
}

func (a *app) close() {
	a.stopBg()
	a.bg.Wait()
	a.svc.Close()
	a.hub.Close()
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i]()
	}
}

// WeChat API calls must not hang a request: silenceper takes no context for
// qrcode/create, so its HTTP client's timeout is the only bound. 4 s: a
// browser waits for this answer, WeChat's API normally answers in well under
// a second, and a hung WeChat (tested at 5 s, its own callback budget) is cut
// before then. wechat.Client caps how many calls wait at once.
const wechatTimeout = 4 * time.Second

// unionIDTimeout bounds one background unionid lookup (token and
// user/info); the login it follows was answered before it started.
const unionIDTimeout = 3 * time.Second

// demoAppID is the stand-in Official Account of demo mode.
const demoAppID = "wxdemo00000000000"

func build(ctx context.Context, cfg *config, log *slog.Logger, self string) (*app, error) {
	a := &app{}
	m := metrics.New()
	store, rdb, err := openStore(ctx, cfg, log, m)
	if err != nil {
		return nil, err
	}
	a.store = store
	a.closers = append(a.closers, store.Close)

	hubOpts := []events.Option{
		events.WithHeartbeat(cfg.Heartbeat),
		events.WithLimits(cfg.MaxStreams, cfg.MaxStreamsIP),
		events.WithLogger(log),
	}
	if rdb != nil { // a cluster: changes reach every instance's streams over pub/sub
		hubOpts = append(hubOpts, events.WithTransport(events.NewRedisTransport(rdb, cfg.RedisPrefix, events.WithRedisLogger(log))))
	}
	a.hub = events.NewHub(hubOpts...)

	wcfg := wechat.Config{AppID: cfg.AppID, AppSecret: cfg.AppSecret, Token: cfg.Token, AESKey: cfg.AESKey}
	if cfg.Demo() {
		wcfg = demoWeChat(cfg, log)
	}
	// One access token for the cluster (stable_token: nobody invalidates
	// another's). Not in demo mode: each process has its own stand-in, which
	// knows only the tokens it issued.
	if rdb != nil && !cfg.Demo() {
		wcfg.Cache = wechat.NewRedisCache(rdb, cfg.RedisPrefix, log)
	}
	wcfg.Observe = m.ObserveWeChat
	client := wechat.NewClient(wcfg, log)

	svcOpts := []login.Option{
		login.WithQRTTL(cfg.QRTTL),
		login.WithConfirmLinks(cfg.ConfirmMode == "link"),
		login.WithMethods(cfg.Methods),
		login.WithLogger(log),
	}
	svcOpts = append(svcOpts, unsubscribeOptions(cfg, store)...)
	if cfg.Methods.OAuth {
		svcOpts = append(svcOpts, login.WithWebAuth(client))
	}
	if cfg.UnionID {
		svcOpts = append(svcOpts, login.WithUnionIDLookup(client, unionIDTimeout))
	}
	a.svc = login.NewService(m.Store(store), m.Notifier(a.hub), client, svcOpts...)
	replies := wechat.Replies{Template: cfg.ReplyTemplate}
	cbcfg := wechat.CallbackConfig{Token: wcfg.Token, Log: log, Replies: replies,
		Observe: m.ObserveCallback, ObserveCode: m.ObserveCode}
	if cfg.ForwardURL != "" {
		fw, err := wechat.NewForwarder(wechat.ForwarderConfig{Target: cfg.ForwardURL, Timeout: cfg.ForwardTimeout,
			Log: log, Observe: m.ObserveForward})
		if err != nil {
			a.hub.Close()
			store.Close()
			return nil, fmt.Errorf("WXLOGIN_FORWARD_URL: %w", err)
		}
		cbcfg.Forward = fw
		a.forwarder = fw
	}
	// Bindings of signed queries to bodies must be seen by every instance:
	// the Redis store keeps them. bbolt is one process: they stay in it, and
	// the bbolt file carries them over a graceful restart.
	switch st := store.(type) {
	case wechat.QueryBindings:
		cbcfg.Queries = st
	case *storage.Bolt:
		cbcfg.Queries = keptQueryBindings(a, st, log)
	}
	links, err := confirmLinks(cfg, wcfg)
	if err != nil {
		a.hub.Close()
		store.Close()
		return nil, err
	}
	if links != nil {
		cbcfg.ConfirmLink = handlers.ConfirmLink(a.svc, links, cfg.PublicURL)
	}
	callback := wechat.NewCallback(client, a.svc, cbcfg)

	hcfg := handlers.Config{
		PublicURL:      cfg.PublicURL,
		AllowedOrigins: cfg.AllowedOrigins,
		Demo:           cfg.Demo(),
		Static:         static.Files,
		SceneRate:      cfg.SceneRate,
		Callback:       callback,
		Log:            log,
		IPExtractor:    ipExtractor(cfg),
		Metrics:        m.Handler(),
		Middleware:     []echo.MiddlewareFunc{metrics.AccessLog(log), m.Middleware()},
		OpenAPI:        openAPIDocument,
		Links:          links,
		FollowQR:       cfg.FollowQR,
		AccountName:    cfg.AccountName,
		Admin:          adminAPI(cfg, store, log),
		LoginText:      replies.Text,
		Ready: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return store.Ping(ctx)
		},
	}
	if cfg.Methods.OAuth {
		hcfg.WebAuth = webAuthConfig(client, cfg.Demo(), m)
	}
	if cfg.Demo() {
		sim := &wechat.Simulator{URL: self + "/wechat/callback", Token: wcfg.Token, AppID: wcfg.AppID, AESKey: wcfg.AESKey}
		hcfg.DevScan = func(ctx context.Context, sceneID, openID string, firstFollow bool) (string, error) {
			r, err := sim.Send(ctx, wechat.ScanEvent(sceneID, openID, firstFollow, time.Now()))
			if err != nil {
				return "", err
			}
			if r.Status != http.StatusOK {
				return "", fmt.Errorf("callback answered %d", r.Status)
			}
			return r.Text, nil
		}
		var msgIDs atomic.Int64
		msgIDs.Store(time.Now().UnixNano())
		hcfg.DevSendCode = func(ctx context.Context, openID, content string) (string, error) {
			r, err := sim.Send(ctx, wechat.TextMessage(openID, content, msgIDs.Add(1), time.Now()))
			if err != nil {
				return "", err
			}
			if r.Status != http.StatusOK {
				return "", fmt.Errorf("callback answered %d", r.Status)
			}
			return r.Text, nil
		}
	}
	e := handlers.New(a.svc, m.Streams(a.hub), hcfg)
	purgeOIDC, err := mountOIDC(ctx, cfg, log, e, store, rdb, a.svc, self)
	if err != nil {
		a.hub.Close()
		store.Close()
		return nil, err
	}
	a.handler = e

	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopBg = cancel
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		// Scenes expire and go on time, so streams learn of expiry.
		every(bgCtx, cfg.SweepInterval, "sweep", a.svc.Sweep, log)
	}()
	if purgeOIDC != nil {
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			every(bgCtx, oidcPurgeInterval, "purge OIDC records", purgeOIDC, log)
		}()
	}
	return a, nil
}

// keptQueryBindingsName names the webhook's query bindings in the bbolt file.
const keptQueryBindingsName = "callback_query_bindings"

// keptQueryBindings returns in-process query bindings that start with those
// kept at the last graceful stop and are kept again at close.
func keptQueryBindings(a *app, st *storage.Bolt, log *slog.Logger) *wechat.LocalQueryBindings {
	local := wechat.NewLocalQueryBindings()
	data, err := st.TakeKept(keptQueryBindingsName)
	if err == nil && data != nil {
		err = local.UnmarshalBinary(data)
	}
	if err != nil {
		log.Warn("callback query bindings of the last run not restored", "err", err)
	}
	a.closers = append(a.closers, func() error { // runs before the store closes
		data, err := local.MarshalBinary()
		if err != nil {
			return err
		}
		return st.Keep(keptQueryBindingsName, data)
	})
	return local
}

// openStore opens Redis when WXLOGIN_REDIS_URL is set (returning its client
// for the event transport and the token cache), bbolt otherwise. An
// unreachable Redis does not stop the start: /readyz says 503 until it
// answers, and requests fail with 503 meanwhile.
func openStore(ctx context.Context, cfg *config, log *slog.Logger, m *metrics.Metrics) (login.Store, *redis.Client, error) {
	if cfg.RedisURL == "" {
		st, err := storage.OpenBolt(cfg.DB, storage.WithLogger(log), storage.WithTimings(m.ObserveStorage))
		if err != nil {
			return nil, nil, err
		}
		return st, nil, nil
	}
	redis.SetLogger(storage.RedisLogger(log))
	rdb, err := storage.NewRedisClient(cfg.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	st := storage.NewRedis(rdb, cfg.RedisPrefix)
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := st.Ping(pingCtx); err != nil {
		log.Error("redis is not reachable; not ready until it is", "addr", rdb.Options().Addr, "err", err)
	}
	log.Info("storage: redis", "addr", rdb.Options().Addr, "db", rdb.Options().DB, "prefix", cfg.RedisPrefix)
	return st, rdb, nil
}

// webAuthConfig wires the oauth method: WeChat's authorisation page, or in
// demo mode the stand-in's page on our own origin, which issues the
// stand-in's codes — demo mode never sends a browser to WeChat.
func webAuthConfig(client *wechat.Client, demo bool, m *metrics.Metrics) *handlers.WebAuthConfig {
	wc := &handlers.WebAuthConfig{AuthorizeURL: client.WebAuthURL, Observe: m.ObserveWebAuth}
	if demo {
		wc.AuthorizeURL = func(redirectURI, state string) string {
			return wechat.StandInAuthorizeURL(client.WebAuthURL(redirectURI, state), handlers.DevAuthorizePath)
		}
		wc.DevAuthorize = wechat.DemoWebAuthCode
	}
	return wc
}

// weChatHTTPClient is the process's way to WeChat's API (see main): WeChat
// itself, or in demo mode an in-process stand-in.
func weChatHTTPClient(getenv func(string) string) *http.Client {
	if demoMode(getenv) {
		return wechat.InProcessClient(wechat.NewStandIn(), wechatTimeout)
	}
	return &http.Client{Timeout: wechatTimeout}
}

// demoWeChat is the stand-in Official Account of demo mode; it says loudly
// that this is a demo. Its API calls reach the stand-in main chose.
func demoWeChat(cfg *config, log *slog.Logger) wechat.Config {
	token := cfg.Token
	if token == "" {
		token = random.String(24)
		log.Warn("DEMO MODE: callback token generated for this run", "wechat_token", token)
	}
	log.Warn("DEMO MODE: no WECHAT_APPID set. WeChat's API is simulated in-process and " +
		"/api/v1/dev/scan can log anyone in. Never expose this to the internet.")
	return wechat.Config{AppID: demoAppID, AppSecret: "demo-secret", Token: token, AESKey: cfg.AESKey}
}

// oidcPurgeInterval is how often expired OIDC records go: finished
// authorization requests hold a user's id and openid, and a quiet instance
// would otherwise keep them until the next request.
const oidcPurgeInterval = time.Minute

// every runs job at each tick until ctx ends, logging its failures.
func every(ctx context.Context, interval time.Duration, what string, job func(context.Context) (int, error), log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := job(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn(what, "err", err)
		}
	}
}

// confirmLinks returns the confirm-link signer in confirm mode (nil
// otherwise). The key is WXLOGIN_LINK_KEY, or else derived from the WeChat
// secrets every instance already shares, so a link made by one instance
// works on any other without extra configuration.
func confirmLinks(cfg *config, wcfg wechat.Config) (*login.LinkSigner, error) {
	if cfg.ConfirmMode != "link" {
		return nil, nil
	}
	key := []byte(cfg.LinkKey)
	if len(key) == 0 {
		key = login.DeriveLinkKey(wcfg.AppSecret, wcfg.Token, wcfg.AESKey)
	}
	links, err := login.NewLinkSigner(key)
	if err != nil {
		return nil, fmt.Errorf("WXLOGIN_LINK_KEY: %w", err)
	}
	return links, nil
}

func ipExtractor(cfg *config) echo.IPExtractor {
	if len(cfg.TrustedProxies) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range cfg.TrustedProxies {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
