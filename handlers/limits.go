package handlers

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pollThrottle enforces the poll interval per scene. The interval counts from
// the end of the previous request (a long-poll ends when it answers). State
// is per instance: behind a balancer a client may poll a little faster.
type pollThrottle struct {
	interval time.Duration
	slack    time.Duration

	mu       sync.Mutex
	lastEnd  map[string]time.Time
	inFlight map[string]int
	swept    time.Time
}

func newPollThrottle(interval time.Duration) *pollThrottle {
	return &pollThrottle{
		interval: interval,
		slack:    interval / 10, // timers and networks are not exact
		lastEnd:  make(map[string]time.Time),
		inFlight: make(map[string]int),
	}
}

// begin admits a poll, or says how long to wait.
func (p *pollThrottle) begin(id string) (time.Duration, bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(now)
	if p.inFlight[id] > 0 {
		return p.interval, false // one poll per scene at a time
	}
	if end, ok := p.lastEnd[id]; ok {
		if wait := end.Add(p.interval - p.slack).Sub(now); wait > 0 {
			return end.Add(p.interval).Sub(now), false
		}
	}
	p.inFlight[id]++
	return 0, true
}

// end records when the poll answered.
func (p *pollThrottle) end(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight[id]--; p.inFlight[id] <= 0 {
		delete(p.inFlight, id)
	}
	p.lastEnd[id] = time.Now()
}

// sweepLocked forgets scenes not polled for a while, so the map stays small.
func (p *pollThrottle) sweepLocked(now time.Time) {
	if now.Sub(p.swept) < time.Minute {
		return
	}
	p.swept = now
	for id, t := range p.lastEnd {
		if now.Sub(t) > p.interval+time.Minute {
			delete(p.lastEnd, id)
		}
	}
}

// ipLimiter is a token bucket per client IP for scene creation.
type ipLimiter struct {
	perMinute int

	mu    sync.Mutex
	m     map[string]*ipBucket
	swept time.Time
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, m: make(map[string]*ipBucket)}
}

// allow takes one token for ip, or says how long until one is free.
func (l *ipLimiter) allow(ip string) (time.Duration, bool) {
	if l.perMinute <= 0 {
		return 0, true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.swept = now
		for k, b := range l.m {
			if now.Sub(b.seen) > 2*time.Minute { // a full bucket again: forget it
				delete(l.m, k)
			}
		}
	}
	b := l.m[ip]
	if b == nil {
		b = &ipBucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.m[ip] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}
