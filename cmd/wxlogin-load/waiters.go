package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the zero of every timestamp this tool compares (monotonic clock).
var epoch = time.Now()

// A waiter is one client holding a stream: a browser waiting for its scan
// (wxlogin) or a subscriber of a bare r3labs/sse stream (baseline).
type waiter struct {
	ID     string // scene or stream id
	Secret string // wxlogin: the scene's secret
	Path   string // the stream's path
	Header http.Header

	mu      sync.Mutex
	trigger *trigger // the scan (publish) sent for it, if any
}

// trigger is one scan (or publish) and what became of it.
type trigger struct {
	seq      int64
	w        *waiter
	sentAt   atomic.Int64 // since epoch; written by the sender, read by the stream reader
	acked    atomic.Bool  // the server answered the callback/publish successfully
	failed   atomic.Bool  // the server refused or failed it: no event is owed
	notified atomic.Int32 // events the waiter read for it
}

// target is the server side of a waiter scenario.
type target interface {
	// prepare makes a fresh waiter (wxlogin: creates a scene).
	prepare(ctx context.Context) (*waiter, error)
	// initial reports whether the stream sends the current state first.
	initial() bool
	// fire sends the scan (wxlogin: a signed WeChat callback) or publish.
	fire(ctx context.Context, t *trigger) error
	// check validates a pushed event for t's waiter.
	check(t *trigger, ev sseEvent) error
	// ends reports whether the stream ends after the pushed event, so the
	// waiter starts over with a new scene (login churn).
	ends() bool
}

// scenario runs waiters against a target.
type scenario struct {
	t      target
	d      *sourceDialer
	addr   string
	events latencies // callback sent → event read
	acks   latencies // callback sent → callback answered

	mu       sync.Mutex
	ready    []*waiter
	triggers []*trigger
	seq      atomic.Int64

	connected    atomic.Int64 // streams open now
	everReady    atomic.Int64
	connectErrs  atomic.Int64
	streamErrs   atomic.Int64
	fireErrs     atomic.Int64
	badEvents    atomic.Int64
	unexpected   atomic.Int64 // events nobody asked for
	noReady      atomic.Int64 // scan ticks that found no waiting client
	lastErr      atomic.Value
	disconnected atomic.Int64 // streams that ended without a terminal event
}

func (s *scenario) noteErr(counter *atomic.Int64, err error) {
	counter.Add(1)
	s.lastErr.Store(err.Error())
}

// runWaiter keeps one waiter slot filled until ctx ends.
// onFirst is called once, when the slot first holds a ready stream (or gives up).
func (s *scenario) runWaiter(ctx context.Context, onFirst func()) {
	var once sync.Once
	signal := func() { once.Do(onFirst) }
	defer signal()
	for ctx.Err() == nil {
		if err := s.hold(ctx, signal); err != nil && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond) // do not spin on a failing server
		}
	}
}

// hold runs one waiter: prepare, open the stream, wait for its pushes.
func (s *scenario) hold(ctx context.Context, ready func()) error {
	w, err := s.t.prepare(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.noteErr(&s.connectErrs, err)
		}
		return err
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := openSSE(openCtx, s.d, s.addr, w.Path, w.Header)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.noteErr(&s.connectErrs, err)
		}
		return err
	}
	s.connected.Add(1)
	defer s.connected.Add(-1)
	stop := context.AfterFunc(ctx, st.Close)
	defer stop()
	defer st.Close()

	if s.t.initial() {
		ev, err := st.Next()
		if err != nil {
			if ctx.Err() == nil {
				s.noteErr(&s.streamErrs, fmt.Errorf("first event: %w", err))
			}
			return err
		}
		if ev.Event != "pending" || ev.ID != "1" {
			s.noteErr(&s.badEvents, fmt.Errorf("first event %q id %q, want pending id 1", ev.Event, ev.ID))
		}
	}
	s.everReady.Add(1)
	s.putReady(w)
	ready()
	for {
		ev, err := st.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.takeReady(w) // gone: must not be scanned any more
			if errors.Is(err, io.EOF) {
				s.disconnected.Add(1)
			} else {
				s.noteErr(&s.streamErrs, err)
			}
			return err
		}
		w.mu.Lock()
		t := w.trigger
		w.mu.Unlock()
		if t == nil {
			s.noteErr(&s.unexpected, fmt.Errorf("unasked-for event %q on %s", ev.Event, w.ID))
			continue
		}
		if t.notified.Add(1) == 1 {
			s.events.add(ev.At.Sub(epoch) - time.Duration(t.sentAt.Load()))
		}
		if err := s.t.check(t, ev); err != nil {
			s.noteErr(&s.badEvents, err)
		}
		if s.t.ends() {
			return s.drainAfterTerminal(st, w)
		}
		w.mu.Lock()
		w.trigger = nil
		w.mu.Unlock()
		s.putReady(w)
	}
}

// drainAfterTerminal reads the rest of a stream that must end now; any
// further event for the same scan is a duplicate (counted by notified).
func (s *scenario) drainAfterTerminal(st *sseStream, w *waiter) error {
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			s.noteErr(&s.streamErrs, fmt.Errorf("stream did not end after its terminal event: %w", err))
			return err
		}
		w.mu.Lock()
		t := w.trigger
		w.mu.Unlock()
		t.notified.Add(1)
		s.lastErr.Store(fmt.Sprintf("duplicate event %q id %s on %s", ev.Event, ev.ID, w.ID))
	}
}

func (s *scenario) putReady(w *waiter) {
	s.mu.Lock()
	s.ready = append(s.ready, w)
	s.mu.Unlock()
}

// takeReady removes w from the ready list (if there).
func (s *scenario) takeReady(w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.ready {
		if x == w {
			s.ready[i] = s.ready[len(s.ready)-1]
			s.ready = s.ready[:len(s.ready)-1]
			return
		}
	}
}

// pickReady takes a random waiting client, or nil.
func (s *scenario) pickReady() *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ready) == 0 {
		return nil
	}
	i := rand.IntN(len(s.ready))
	w := s.ready[i]
	s.ready[i] = s.ready[len(s.ready)-1]
	s.ready = s.ready[:len(s.ready)-1]
	return w
}

// scan fires at rate per second for d, open loop: each scan is sent on
// schedule in its own goroutine, so a slow answer never delays the next one
// (no coordinated omission).
func (s *scenario) scan(ctx context.Context, rate float64, d time.Duration) {
	if rate <= 0 || d <= 0 {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	period := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * period)
		if !at.Before(end) {
			return
		}
		if wait := time.Until(at); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		w := s.pickReady()
		if w == nil {
			s.noReady.Add(1)
			continue
		}
		t := &trigger{seq: s.seq.Add(1), w: w}
		w.mu.Lock()
		w.trigger = t
		w.mu.Unlock()
		s.mu.Lock()
		s.triggers = append(s.triggers, t)
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.sentAt.Store(int64(time.Since(epoch)))
			if err := s.t.fire(ctx, t); err != nil {
				t.failed.Store(true)
				s.noteErr(&s.fireErrs, err)
				return
			}
			s.acks.add(time.Since(epoch) - time.Duration(t.sentAt.Load()))
			t.acked.Store(true)
		}()
	}
}

// outcome counts what became of every scan.
type outcome struct {
	Scans, Acked, Failed, Notified, Lost, Duplicated int
}

// settleTriggers waits up to grace for owed events, then counts.
func (s *scenario) settleTriggers(grace time.Duration) outcome {
	deadline := time.Now().Add(grace)
	for {
		o := s.count()
		if o.Lost == 0 || time.Now().After(deadline) {
			return o
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *scenario) count() outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	var o outcome
	for _, t := range s.triggers {
		o.Scans++
		n := int(t.notified.Load())
		switch {
		case t.acked.Load():
			o.Acked++
		case t.failed.Load():
			o.Failed++
		}
		if n > 0 {
			o.Notified++
		}
		if n > 1 {
			o.Duplicated += n - 1
		}
		// A scan the server confirmed must reach its client. (A failed one
		// may or may not have committed; it is reported as a failure.)
		if t.acked.Load() && n == 0 {
			o.Lost++
		}
	}
	return o
}
