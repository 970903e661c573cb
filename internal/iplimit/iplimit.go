// Package iplimit limits requests per client. A client is an IPv4 address
// or the /64 an IPv6 address is in: one IPv6 subscriber is normally given a
// whole /64 and may use any address in it, so a limit per IPv6 address
// limits nothing.
package iplimit

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Key is what per-client limits count by: an IPv4 address (an IPv4-mapped
// IPv6 address included), or the /64 of an IPv6 address. Anything that is
// not an address is counted as given.
func Key(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap() // ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
	if addr.Is4() {
		return addr.String()
	}
	prefix, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return prefix.String()
}

// Limiter is a token bucket per client: perMinute requests a minute, with a
// burst of as many. Buckets that have filled up again are forgotten, so the
// map holds only clients seen in the last minutes.
type Limiter struct {
	perMinute int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns a Limiter; perMinute ≤ 0 limits nothing.
func New(perMinute int) *Limiter {
	return &Limiter{perMinute: perMinute, buckets: make(map[string]*bucket)}
}

// Allow takes one request for the client at ip, or says how long until the
// client may ask again.
func (l *Limiter) Allow(ip string, now time.Time) (wait time.Duration, ok bool) {
	if l.perMinute <= 0 {
		return 0, true
	}
	key := Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.swept = now
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 2*time.Minute { // a full bucket again: forget it
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}
