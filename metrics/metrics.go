// Package metrics exposes wxlogin's Prometheus metrics on a registry of its
// own and writes one log line per request. It watches the service from the
// outside, through decorators around the interfaces the core already has
// (login.Store, login.Notifier, the handlers' Streams) and the hooks the
// adapters take at construction (wechat.CallbackConfig.Observe,
// wechat.Config.Observe), so no domain code knows it exists.
//
// Construction: New takes nothing; its methods wrap or observe what wiring
// hands them.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"wxlogin/events"
	"wxlogin/handlers"
	"wxlogin/login"
)

const namespace = "wxlogin"

// StreamRoute is the SSE route; its duration is the life of a stream, not a
// response time, so it stays out of the request-duration histogram.
const StreamRoute = "/api/v1/login/scenes/:id/events"

// Metrics holds every collector of one wxlogin instance.
type Metrics struct {
	reg *prometheus.Registry

	scenes        *prometheus.CounterVec // event: created, scanned, confirmed, denied, expired, consumed
	streams       prometheus.Gauge
	streamLife    prometheus.Histogram
	longPolls     prometheus.Gauge
	rejected      *prometheus.CounterVec // reason: the login error code
	callbacks     *prometheus.CounterVec // event, result
	wechatCalls   *prometheus.CounterVec // api, errcode ("0" = ok, "none" = no answer)
	wechatUp      prometheus.Gauge
	duration      *prometheus.HistogramVec // route, method, code
	inFlightTotal prometheus.Gauge
	storage       *prometheus.HistogramVec // phase: journal_sync, checkpoint
	loginCodes    *prometheus.CounterVec   // outcome (codeOutcomes)
	forwards      *prometheus.CounterVec   // mode, result (wechat.Forward*)
	forwardTime   *prometheus.HistogramVec // mode
	webAuth       *prometheus.CounterVec   // outcome: login.WebAuthOutcomes
}

// codeOutcomes are the label values of login_codes_total: what a login
// code sent to the account did.
var codeOutcomes = []string{"confirmed", "scanned", "already_used", "expired", "code_miss", "too_many_attempts", "duplicate"}

// forwardResults and forwardModes are the label values of forwards_total.
var (
	forwardResults = []string{"ok", "http_error", "timeout", "conn_error", "busy", "too_large"}
	forwardModes   = []string{"reply", "after"}
)

// New creates the collectors on a fresh registry, with the Go runtime and
// process collectors (goroutines, open files, memory) beside them.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		scenes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "scenes_total",
			Help: "Scene events committed by this instance: created, scanned, confirmed, denied, expired, consumed.",
		}, []string{"event"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "open_streams",
			Help: "SSE streams open on this instance.",
		}),
		longPolls: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "long_polls_in_flight",
			Help: "Long-polls (?wait=) waiting on this instance.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "streams_rejected_total",
			Help: "Streams and long-polls refused by the caps or by shutdown, by error code.",
		}, []string{"reason"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "wechat_callbacks_total",
			Help: "WeChat webhook requests by event and result.",
		}, []string{"event", "result"}),
		wechatCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "wechat_api_calls_total",
			Help: `Calls to WeChat's API by api and errcode ("0" = success, "none" = no usable answer: timeout, connection or HTTP error).`,
		}, []string{"api", "errcode"}),
		wechatUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "wechat_up",
			Help: "1 if the last call to WeChat's API succeeded, 0 if it failed. WeChat's health is not part of /readyz.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request duration by route (SSE streams and long-polls excluded).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
		streamLife: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "stream_duration_seconds",
			Help:    "How long SSE streams stayed open, from start to close (a stream's request-log line is written when it starts).",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		inFlightTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "http_requests_in_flight",
			Help: "HTTP requests being served; an SSE stream only while it starts (see open_streams).",
		}),
		storage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "bbolt_seconds",
			Help: "bbolt store: journal_sync is one write and fdatasync of the journal, shared by the writes waiting " +
				"(a scan waits for one); checkpoint is one bbolt commit of everything since the previous one.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"phase"}),
		webAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "oauth_callbacks_total",
			Help: "Returns from WeChat's web authorisation (the oauth method) by outcome.",
		}, []string{"outcome"}),
	}
	m.loginCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "login_codes_total",
		Help: "Login codes sent to the account, by outcome: confirmed, scanned (confirm mode), already_used, expired, " +
			"code_miss (no waiting scene holds it), too_many_attempts (sender locked out), duplicate (WeChat's retry).",
	}, []string{"outcome"})
	m.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "forwards_total",
		Help: "Messages forwarded to the account's handler (WXLOGIN_FORWARD_URL) by mode (reply: its answer goes to WeChat; " +
			"after: wxlogin answered) and result (ok, http_error, timeout, conn_error, busy: every slot taken, too_large).",
	}, []string{"mode", "result"})
	m.forwardTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "forward_duration_seconds",
		Help:    "How long the account's handler took to answer a forwarded message (busy forwards excluded).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 4, 5},
	}, []string{"mode"})
	for _, o := range codeOutcomes {
		m.loginCodes.WithLabelValues(o)
	}
	for _, mode := range forwardModes {
		for _, r := range forwardResults {
			m.forwards.WithLabelValues(mode, r)
		}
	}
	m.reg.MustRegister(m.loginCodes, m.forwards, m.forwardTime)
	m.reg.MustRegister(m.webAuth,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.scenes, m.streams, m.streamLife, m.longPolls, m.rejected, m.callbacks,
		m.wechatCalls, m.wechatUp, m.duration, m.inFlightTotal, m.storage,
	)
	// Known series start at zero, so rate() works from the first scrape.
	for _, ev := range []string{"created", "scanned", "confirmed", "denied", "expired", "consumed"} {
		m.scenes.WithLabelValues(ev)
	}
	for _, o := range login.WebAuthOutcomes {
		m.webAuth.WithLabelValues(string(o))
	}
	m.wechatUp.Set(1) // nothing has failed yet
	return m
}

// ObserveStorage records how long a phase of the bbolt store took (for
// storage.WithTimings).
func (m *Metrics) ObserveStorage(phase string, d time.Duration) {
	m.storage.WithLabelValues(phase).Observe(d.Seconds())
}

// Registry is the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Store counts scenes as they are stored.
func (m *Metrics) Store(next login.Store) login.Store { return &countingStore{Store: next, m: m} }

type countingStore struct {
	login.Store
	m *Metrics
}

func (s *countingStore) CreateScene(ctx context.Context, sc *login.Scene) error {
	err := s.Store.CreateScene(ctx, sc)
	if err == nil {
		s.m.scenes.WithLabelValues("created").Inc()
	}
	return err
}

// Notifier counts every committed status change; login.Service calls its
// Notifier exactly once per committed change, on the instance that made it.
func (m *Metrics) Notifier(next login.Notifier) login.Notifier {
	return &countingNotifier{next: next, m: m}
}

type countingNotifier struct {
	next login.Notifier
	m    *Metrics
}

func (n *countingNotifier) Notify(ctx context.Context, v login.View) {
	switch v.Status {
	case login.StatusScanned, login.StatusConfirmed, login.StatusDenied, login.StatusExpired, login.StatusConsumed:
		n.m.scenes.WithLabelValues(string(v.Status)).Inc()
	}
	n.next.Notify(ctx, v)
}

// Streams counts open SSE streams (Serve) and waiting long-polls (Changed,
// which only the long-poll uses) on the way to the hub.
func (m *Metrics) Streams(next handlers.Streams) handlers.Streams {
	return &countingStreams{next: next, m: m}
}

type countingStreams struct {
	next handlers.Streams
	m    *Metrics
}

func (s *countingStreams) Acquire(ip string) (func(), error) {
	release, err := s.next.Acquire(ip)
	if err != nil {
		s.m.rejected.WithLabelValues(login.ErrorCode(err)).Inc()
	}
	return release, err
}

func (s *countingStreams) Changed(sceneID string) (<-chan struct{}, func()) {
	ch, stop := s.next.Changed(sceneID)
	s.m.longPolls.Inc()
	var once sync.Once
	return ch, func() {
		stop()
		once.Do(s.m.longPolls.Dec)
	}
}

func (s *countingStreams) Serve(w http.ResponseWriter, r *http.Request, req events.StreamRequest) {
	s.m.streams.Inc()
	start := time.Now()
	done := req.Done
	req.Done = func() { // the stream may outlive Serve
		s.m.streams.Dec()
		s.m.streamLife.Observe(time.Since(start).Seconds())
		if done != nil {
			done()
		}
	}
	s.next.Serve(w, r, req)
}

// ObserveCallback is wechat.Callback.Observe.
func (m *Metrics) ObserveCallback(event, result string) {
	m.callbacks.WithLabelValues(callbackEvent(event), result).Inc()
}

// callbackEvent keeps the label to a small set: the event name comes from
// the message, and only WeChat (holding the token) can send one, but a
// label must never grow with input.
func callbackEvent(event string) string {
	switch event {
	case "subscribe", "scan", "unsubscribe", "text":
		return event
	case "":
		return "none" // refused before parsing (signature, size)
	}
	return "other"
}

// ObserveCode is wechat.Callback.ObserveCode: what one login code did.
func (m *Metrics) ObserveCode(outcome string) {
	m.loginCodes.WithLabelValues(fixedLabel(outcome, codeOutcomes)).Inc()
}

// ObserveForward is wechat.Forwarder.Observe: one forward's mode, result
// and duration.
func (m *Metrics) ObserveForward(mode, result string, d time.Duration) {
	mode = fixedLabel(mode, forwardModes)
	m.forwards.WithLabelValues(mode, fixedLabel(result, forwardResults)).Inc()
	if result != "busy" {
		m.forwardTime.WithLabelValues(mode).Observe(d.Seconds())
	}
}

// fixedLabel keeps a label within its known values ("other" otherwise), so
// a new outcome in an adapter can never grow a series without bound.
func fixedLabel(v string, known []string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return "other"
}

// ObserveWebAuth counts one return from WeChat's web authorisation; the
// outcome comes from the fixed set login.WebAuthOutcomes.
func (m *Metrics) ObserveWebAuth(outcome login.WebAuthOutcome) {
	m.webAuth.WithLabelValues(string(outcome)).Inc()
}

// ObserveWeChat is wechat.Client.Observe: one call to WeChat's API and its
// errcode ("0" = success, "none" = no usable answer).
func (m *Metrics) ObserveWeChat(api, errcode string) {
	m.wechatCalls.WithLabelValues(api, errcodeLabel(errcode)).Inc()
	if errcode == "0" {
		m.wechatUp.Set(1)
	} else {
		m.wechatUp.Set(0)
	}
}

// methodLabel keeps the method label to the standard methods. The method
// is whatever the client sent, and every new label value is a series kept
// (and scraped) for the life of the process: 5 000 invented methods made
// /metrics 9 MB and doubled the process's memory.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// errcodeLabel keeps WeChat's errcodes that tell an operator what to do;
// any other is "other" (the WeChat client logs the number). WeChat, not our
// clients, chooses the errcode, but a label must not grow with any input.
func errcodeLabel(errcode string) string {
	switch errcode {
	case "0", "none", // success; no usable answer
		"-1",    // WeChat busy
		"40001", // invalid credential (secret, or a token taken over elsewhere)
		"40013", // invalid appid
		"40014", // invalid access token
		"40125", // invalid appsecret
		"40164", // this server's IP is not on the account's allow list
		"41001", // access token missing
		"42001", // access token expired
		"40029", // web authorisation: invalid or expired code
		"40163", // web authorisation: code already used
		"45009", // daily quota reached
		"45011", // API called too often
		"48001", // API not authorised (not a verified Service Account)
		"50002": // user limited
		return errcode
	}
	return "other"
}

// Middleware times every request except streams and long-polls, by route
// pattern (never the raw path: that would grow without bound).
func (m *Metrics) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			m.inFlightTotal.Inc()
			defer m.inFlightTotal.Dec()
			start := time.Now()
			writeError(c, next(c))
			m.observeRequest(c, start)
			return nil
		}
	}
}

// observeRequest records a finished request's duration.
func (m *Metrics) observeRequest(c echo.Context, start time.Time) {
	route := routeOf(c)
	if route == StreamRoute || c.QueryParam("wait") != "" {
		return
	}
	m.duration.WithLabelValues(route, methodLabel(c.Request().Method), strconv.Itoa(c.Response().Status)).
		Observe(time.Since(start).Seconds())
}

// writeError lets Echo's error handler (the one JSON error table) write the
// answer now, so the status is known here. It writes nothing once the
// response is committed.
func writeError(c echo.Context, err error) {
	if err != nil {
		c.Error(err)
	}
}

// routeOf is the route pattern Echo matched (for a 404 or 405, the nearest
// registered node), or "unmatched".
func routeOf(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}
