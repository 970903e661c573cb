package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Forwarding to the account's existing handler (WXLOGIN_FORWARD_URL): an
// Official Account has one server URL, so wxlogin sits there and passes on
// every verified message that is not a login, with WeChat's own query
// string and body, so the handler checks WeChat's signature (and, in safe
// mode, decrypts) as if wxlogin were not there.

// Forwarding limits.
const (
	DefaultForwardTimeout = 4 * time.Second // below WeChat's 5 s
	// MaxForwardTimeout keeps the whole answer inside WeChat's 5 s.
	MaxForwardTimeout = 4500 * time.Millisecond
	// maxForwardsInFlight bounds the forwards waiting on the handler at
	// once: a stalled handler costs at most this many goroutines and
	// connections; beyond it WeChat gets "success" at once.
	maxForwardsInFlight = 64
	// maxForwardReply is the largest handler answer relayed; WeChat's own
	// replies (news with eight articles) are a few KiB.
	maxForwardReply = 64 << 10
)

// Forward results, for logs and metrics (a fixed set).
const (
	ForwardOK        = "ok"
	ForwardHTTPError = "http_error" // non-2xx
	ForwardTimeout   = "timeout"
	ForwardConnError = "conn_error"
	ForwardBusy      = "busy" // every slot taken: not sent
	ForwardTooLarge  = "too_large"
)

// Forward modes: the handler's answer goes to WeChat, or wxlogin has
// answered already and the handler's answer is dropped.
const (
	ForwardModeReply = "reply"
	ForwardModeAfter = "after"
)

// Forwarder sends verified callbacks on to the site's handler.
type Forwarder struct {
	target  *url.URL
	timeout time.Duration
	client  *http.Client
	slots   chan struct{}
	log     *slog.Logger
	bg      sync.WaitGroup
	observe func(mode, result string, d time.Duration) // ForwarderConfig.Observe
}

// ForwarderConfig says where and how verified callbacks are forwarded.
type ForwarderConfig struct {
	Target  string        // an absolute http(s) URL, from configuration only
	Timeout time.Duration // per forward
	Log     *slog.Logger
	// Observe, when set, is told each forward's mode, result and duration.
	Observe func(mode, result string, d time.Duration)
}

// NewForwarder returns a Forwarder, or an error naming what is wrong with cfg.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	target, timeout, log := cfg.Target, cfg.Timeout, cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := ParseForwardURL(target)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 || timeout > MaxForwardTimeout {
		return nil, fmt.Errorf("forward timeout %s: want more than 0 and at most %s (WeChat waits 5 s)", timeout, MaxForwardTimeout)
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // the target is configured; no environment proxy in between
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxForwardsInFlight,
		MaxIdleConnsPerHost:   maxForwardsInFlight, // one host: keep a connection per slot warm
		MaxConnsPerHost:       maxForwardsInFlight,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &Forwarder{
		target:  u,
		timeout: timeout,
		client: &http.Client{
			Transport: transport,
			// A redirect would send WeChat's signed message somewhere the
			// configuration did not name: take the 3xx as the answer (non-2xx).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots:   make(chan struct{}, maxForwardsInFlight),
		log:     log,
		observe: cfg.Observe,
	}, nil
}

// ParseForwardURL checks WXLOGIN_FORWARD_URL: an absolute http(s) URL
// without user information or fragment.
func ParseForwardURL(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want an absolute http(s) URL such as https://example.com/wechat", target)
	}
	return u, nil
}

// Relayed is the handler's answer, to be sent to WeChat unchanged.
type Relayed struct {
	ContentType string
	Body        []byte
}

// Relay forwards one message and returns the handler's answer; ok is false
// when WeChat should get "success" instead (timeout, connection error,
// non-2xx, every slot busy).
func (f *Forwarder) Relay(ctx context.Context, rawQuery, contentType string, body []byte) (Relayed, bool) {
	if !f.acquire() {
		f.done(ForwardModeReply, ForwardBusy, 0, nil)
		return Relayed{}, false
	}
	defer f.release()
	return f.send(ctx, ForwardModeReply, rawQuery, contentType, body)
}

// After forwards a message wxlogin has answered already, in the
// background, dropping the handler's answer. Wait waits for these.
func (f *Forwarder) After(rawQuery, contentType string, body []byte) {
	if !f.acquire() {
		f.done(ForwardModeAfter, ForwardBusy, 0, nil)
		return
	}
	f.bg.Add(1)
	go func() {
		defer f.bg.Done()
		defer f.release()
		f.send(context.Background(), ForwardModeAfter, rawQuery, contentType, body)
	}()
}

// Wait waits for background forwards (each ends within the timeout) or
// until ctx ends, then closes idle connections.
func (f *Forwarder) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		f.bg.Wait()
		close(done)
	}()
	defer f.client.CloseIdleConnections()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("background forwards still running: %w", ctx.Err())
	}
}

func (f *Forwarder) acquire() bool {
	select {
	case f.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (f *Forwarder) release() { <-f.slots }

// send makes one request and reads the answer. The request runs apart from
// the caller's cancellation (WeChat hanging up must not cut the handler
// short mid-message) but never longer than the timeout.
func (f *Forwarder) send(ctx context.Context, mode, rawQuery, contentType string, body []byte) (Relayed, bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.urlWith(rawQuery), bytes.NewReader(body))
	if err != nil {
		f.done(mode, ForwardConnError, time.Since(start), err)
		return Relayed{}, false
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "wxlogin-forward")
	resp, err := f.client.Do(req)
	if err != nil {
		f.done(mode, classify(err), time.Since(start), err)
		return Relayed{}, false
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardReply+1))
	switch {
	case err != nil:
		f.done(mode, classify(err), time.Since(start), err)
		return Relayed{}, false
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		f.done(mode, ForwardHTTPError, time.Since(start), fmt.Errorf("handler answered %d", resp.StatusCode))
		return Relayed{}, false
	case len(reply) > maxForwardReply:
		f.done(mode, ForwardTooLarge, time.Since(start), fmt.Errorf("handler answered more than %d bytes", maxForwardReply))
		return Relayed{}, false
	}
	f.done(mode, ForwardOK, time.Since(start), nil)
	return Relayed{ContentType: resp.Header.Get("Content-Type"), Body: reply}, true
}

// urlWith is the target with WeChat's query string, exactly as it came,
// after the target's own query (if it has one).
func (f *Forwarder) urlWith(rawQuery string) string {
	u := *f.target
	switch {
	case u.RawQuery == "":
		u.RawQuery = rawQuery
	case rawQuery != "":
		u.RawQuery += "&" + rawQuery
	}
	return u.String()
}

func classify(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ForwardTimeout
	}
	return ForwardConnError
}

// done logs a failed forward (never its query, body or openid: they carry
// WeChat's signature and the person) and reports every forward.
func (f *Forwarder) done(mode, result string, d time.Duration, err error) {
	if err != nil || result != ForwardOK {
		f.log.Warn("forward to the account's handler failed; WeChat gets success",
			"mode", mode, "result", result, "duration_ms", d.Milliseconds(), "err", scrubURLError(err))
	}
	if f.observe != nil {
		f.observe(mode, result, d)
	}
}

// scrubURLError drops the URL from a client error: it holds WeChat's
// signed query (and the sender's openid).
func scrubURLError(err error) string {
	if err == nil {
		return ""
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}
