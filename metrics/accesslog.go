package metrics

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestIDHeader carries the request id in both directions: a proxy may set
// it, and every answer has it, so a user's report can be found in the logs.
const RequestIDHeader = "X-Request-ID"

// AccessLog writes one line per request when it ends, with a request id.
// It logs the path and never the query: WeChat's callback query carries its
// signature and nonce, and other queries may carry secrets.
func AccessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			req := c.Request()
			id := requestID(req.Header.Get(RequestIDHeader))
			c.Response().Header().Set(RequestIDHeader, id)
			c.Set("request_id", id)

			writeError(c, next(c))
			logRequest(log, c, id, start)
			return nil
		}
	}
}

// logRequest writes the access line.
func logRequest(log *slog.Logger, c echo.Context, id string, start time.Time) {
	req := c.Request()
	status := c.Response().Status
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	log.LogAttrs(req.Context(), level, "request",
		slog.String("request_id", id),
		slog.String("method", req.Method),
		slog.String("path", req.URL.Path),
		slog.String("route", routeOf(c)),
		slog.Int("status", status),
		slog.Int64("bytes", c.Response().Size),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("ip", c.RealIP()),
	)
}

// requestID keeps a sane id from upstream (a proxy's $request_id) and makes
// one otherwise. Anything odd is replaced: it ends up in log lines.
func requestID(in string) string {
	if len(in) > 0 && len(in) <= 64 {
		ok := true
		for i := 0; i < len(in) && ok; i++ {
			c := in[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		}
		if ok {
			return in
		}
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
