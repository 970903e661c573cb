package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// silentConns tracks connections that have not sent a byte yet, so a
// shutdown can close them at once. net/http's Shutdown waits up to 5 s for
// such a connection (it cannot tell it from a request about to arrive), and
// browsers open them ahead of need (preconnect) and HTTP clients keep spare
// dials in their pools: one was enough to make every shutdown last 5 s.
type silentConns struct {
	mu    sync.Mutex
	since map[net.Conn]time.Time
}

func newSilentConns() *silentConns { return &silentConns{since: map[net.Conn]time.Time{}} }

// track is an http.Server.ConnState hook. A connection leaves StateNew as
// soon as the server has read any byte of a request.
func (s *silentConns) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == http.StateNew {
		s.since[c] = time.Now()
	} else {
		delete(s.since, c)
	}
}

// closeSilent closes connections that have sent nothing for at least age:
// no request can be in flight on them. The age spares one accepted just
// now whose first bytes are still on their way.
func (s *silentConns) closeSilent(age time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, t := range s.since {
		if time.Since(t) >= age {
			c.Close()
			delete(s.since, c)
		}
	}
}

// closeSilentUntil calls closeSilent every tick until done is closed: the
// listener is closed by then, so no new silent connections arrive, but one
// accepted just before may still turn silent-and-old.
func (s *silentConns) closeSilentUntil(done <-chan struct{}, age, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		s.closeSilent(age)
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}
