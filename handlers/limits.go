package handlers

import (
	"sync"
	"time"
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
