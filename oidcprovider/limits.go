package oidcprovider

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// authorizeLimiter bounds new authorization requests per client address:
// each one is a stored record for 30 minutes, so an unbounded flood would
// fill the store. IPv6 clients are keyed by their /64, as elsewhere.
type authorizeLimiter struct {
	perMinute int

	mu    sync.Mutex
	m     map[string]*limiterEntry
	swept time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newAuthorizeLimiter(perMinute int) *authorizeLimiter {
	return &authorizeLimiter{perMinute: perMinute, m: map[string]*limiterEntry{}}
}

// allow takes one token for ip, or says how long until one is free.
func (l *authorizeLimiter) allow(ip string, now time.Time) (time.Duration, bool) {
	if l.perMinute <= 0 {
		return 0, true
	}
	key := addressKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.swept = now
		for k, e := range l.m {
			if now.Sub(e.seen) > 2*time.Minute { // its bucket is full again
				delete(l.m, k)
			}
		}
	}
	e := l.m[key]
	if e == nil {
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.m[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// addressKey is an IPv4 address, or the /64 of an IPv6 one.
func addressKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
