package oidcprovider

import (
	"context"
	"log/slog"

	"github.com/labstack/echo/v4"
)

// op (zitadel/oidc v3.52.0) writes its warnings (refused requests, with the
// client's state, client_id and redirect_uri) through slog's package-level
// functions, that is to slog.Default(): op.WithLogger and
// op.WithFallbackLogger are documented no-ops. Those records cannot reach
// wxlogin's logger without the process-wide default logger, so main sets it
// once to LogRouter's handler (run and the tests set no process global).
// The provider puts its logger in each request's context; LogRouter sends
// the records op writes while serving that request there.

type logKey struct{}

// withLogger puts the provider's logger in the request's context for LogRouter.
func (p *Provider) withLogger(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), logKey{}, p.cfg.Log)))
		return next(c)
	}
}

// LogRouter returns a handler for slog's default logger: a record logged
// with a context that carries a provider's logger goes to that logger, the
// others to fallback. The client's state (and whole redirect URLs, which
// carry it) are left out: a state is the client's anti-forgery value.
func LogRouter(fallback slog.Handler) slog.Handler { return &logRouter{fallback: fallback} }

type logRouter struct{ fallback slog.Handler }

func (h *logRouter) target(ctx context.Context) slog.Handler {
	if ctx != nil {
		if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok && l != nil {
			return l.Handler()
		}
	}
	return h.fallback
}

func (h *logRouter) Enabled(ctx context.Context, level slog.Level) bool {
	return h.target(ctx).Enabled(ctx, level)
}

func (h *logRouter) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a, ok := withoutSecrets(a); ok {
			out.AddAttrs(a)
		}
		return true
	})
	return h.target(ctx).Handle(ctx, out)
}

// WithAttrs and WithGroup keep routing: op logs through the package-level
// functions only, so these are for other users of the default logger.
func (h *logRouter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRouter{fallback: h.fallback.WithAttrs(attrs)}
}

func (h *logRouter) WithGroup(name string) slog.Handler {
	return &logRouter{fallback: h.fallback.WithGroup(name)}
}

// withoutSecrets resolves a (op's errors and requests are LogValuers) and
// drops state, session_state and url attributes at any depth.
func withoutSecrets(a slog.Attr) (slog.Attr, bool) {
	switch a.Key {
	case "state", "session_state", "url":
		return a, false
	}
	a.Value = a.Value.Resolve()
	if a.Value.Kind() != slog.KindGroup {
		return a, true
	}
	var kept []slog.Attr
	for _, g := range a.Value.Group() {
		if g, ok := withoutSecrets(g); ok {
			kept = append(kept, g)
		}
	}
	return slog.Attr{Key: a.Key, Value: slog.GroupValue(kept...)}, true
}
