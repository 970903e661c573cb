// Package events pushes scene changes to waiting clients: SSE streams on
// r3labs/sse (one library stream per client connection, fed by the Hub),
// wake-ups for long-polls, and a Transport that carries changes between
// instances (in-process by default, Redis pub/sub in a cluster).
//
// Construction: NewHub and NewRedisTransport take functional options (With…)
// with documented defaults.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/r3labs/sse/v2"

	"wxlogin/login"
)

// Update is one committed change of a scene, as it travels between instances.
// Data is the poll endpoint's JSON without the per-client code.
type Update struct {
	SceneID string       `json:"scene_id"`
	Version uint64       `json:"version"`
	Status  login.Status `json:"status"`
	Data    []byte       `json:"data"`
}

// Transport carries updates to every instance, this one included.
type Transport interface {
	// Publish sends u to every instance's deliver function.
	Publish(ctx context.Context, u Update) error
	// Run delivers updates until ctx ends. resync is called after the
	// transport (re)connects, so waiters re-read state they may have missed.
	Run(ctx context.Context, deliver func(Update), resync func()) error
}

// ErrDraining is returned for new streams once shutdown has begun.
var ErrDraining = errors.New("server is shutting down")

// Hub holds the streams and long-poll waiters of one instance. It owns
// every stream's lifecycle: it decides what each client is sent, and it ends
// streams itself (terminal status, shutdown, a client that stopped reading).
type Hub struct {
	srv       *sse.Server
	transport Transport
	log       *slog.Logger

	heartbeat    time.Duration
	writeTimeout time.Duration
	retry        time.Duration
	maxTotal     int
	maxPerIP     int

	mu       sync.Mutex
	scenes   map[string]*sceneEntry
	streams  map[*stream]struct{}
	serial   uint64 // numbers the library's streams
	perIP    map[string]int
	total    int
	draining bool
	closed   bool
	idle     *sync.Cond     // signalled when a stream ends
	detached sync.WaitGroup // streams on hijacked connections
	rereads  sync.WaitGroup // resyncs in progress

	stop chan struct{}
	done chan struct{}
}

// sceneEntry is what waits on one scene here.
type sceneEntry struct {
	streams map[*stream]struct{}
	waiters map[chan struct{}]struct{} // long-polls waiting for any change
}

// Option configures a Hub.
type Option func(*Hub)

// WithHeartbeat sets the comment heartbeat period (default 15 s).
func WithHeartbeat(d time.Duration) Option { return func(h *Hub) { h.heartbeat = d } }

// WithWriteTimeout bounds each write to a stream (default 10 s), so a client
// that stopped reading cannot pin a goroutine.
func WithWriteTimeout(d time.Duration) Option { return func(h *Hub) { h.writeTimeout = d } }

// WithRetry sets the reconnect delay advertised in the first event (default 3 s).
func WithRetry(d time.Duration) Option { return func(h *Hub) { h.retry = d } }

// WithLimits caps open streams and long-polls, in total and per client IP (0 = no cap).
func WithLimits(total, perIP int) Option {
	return func(h *Hub) { h.maxTotal, h.maxPerIP = total, perIP }
}

// WithTransport sets how updates reach other instances (default: this process only).
func WithTransport(t Transport) Option { return func(h *Hub) { h.transport = t } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(h *Hub) { h.log = l } }

// NewHub starts a hub; Close stops it.
func NewHub(opts ...Option) *Hub {
	h := &Hub{
		log:          slog.Default(),
		heartbeat:    15 * time.Second,
		writeTimeout: 10 * time.Second,
		retry:        3 * time.Second,
		maxTotal:     15000,
		maxPerIP:     100,
		scenes:       make(map[string]*sceneEntry),
		perIP:        make(map[string]int),
		streams:      make(map[*stream]struct{}),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	h.idle = sync.NewCond(&h.mu)
	for _, o := range opts {
		o(h)
	}
	if h.transport == nil {
		h.transport = localTransport{h}
	}
	srv := sse.New()
	// The library creates a stream when its subscriber arrives and removes
	// it when the subscriber leaves. Only the hub names streams (clients
	// never reach the library's handler), one per connection.
	srv.AutoStream = true
	srv.AutoReplay = false // we send the current state ourselves; no unbounded log
	srv.BufferSize = 8     // a stream sees a handful of events
	srv.Headers = map[string]string{"X-Accel-Buffering": "no"}
	h.srv = srv

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-h.stop
		cancel()
	}()
	go func() {
		defer close(h.done)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); h.heartbeats(ctx) }()
		go func() {
			defer wg.Done()
			if err := h.transport.Run(ctx, h.deliver, h.resync); err != nil && ctx.Err() == nil {
				h.log.Error("event transport stopped", "err", err)
			}
		}()
		wg.Wait()
	}()
	return h
}

// Notify publishes a committed change to every instance (login.Notifier).
func (h *Hub) Notify(ctx context.Context, v login.View) {
	v.Code = ""
	data, err := json.Marshal(v)
	if err != nil {
		h.log.Error("encode scene view", "scene_id", v.SceneID, "err", err)
		return
	}
	u := Update{SceneID: v.SceneID, Version: v.Version, Status: v.Status, Data: data}
	if err := h.transport.Publish(ctx, u); err != nil {
		// The change is committed; waiters on other instances will see it on
		// their next read or reconnect. Say so loudly.
		h.log.Error("publish scene change", "scene_id", v.SceneID, "status", v.Status, "err", err)
		h.deliver(u)
	}
}

// deliver hands an update to this instance's streams and long-polls. Most
// updates in a cluster are for scenes nobody waits on here: those cost one
// map lookup.
func (h *Hub) deliver(u Update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.scenes[u.SceneID]
	if e == nil {
		return
	}
	if len(e.streams) > 0 {
		h.offerEachLocked(e, u)
	}
	h.wakeLocked(u.SceneID, e)
}

// offerEachLocked offers an update to every stream of its scene.
func (h *Hub) offerEachLocked(e *sceneEntry, u Update) {
	confirmed, err := confirmedView(u)
	if err != nil {
		h.log.Error("decode scene update", "scene_id", u.SceneID, "err", err)
		return
	}
	for s := range e.streams {
		h.offerLocked(s, changeFor(s, u, confirmed))
	}
}

// confirmedView decodes a confirmed update, which each client is sent with
// its own code; other updates are sent as they came.
func confirmedView(u Update) (*login.View, error) {
	if u.Status != login.StatusConfirmed {
		return nil, nil
	}
	var v login.View
	if err := json.Unmarshal(u.Data, &v); err != nil {
		return nil, fmt.Errorf("decode confirmed view: %w", err)
	}
	return &v, nil
}

// changeFor is an update as stream s is to see it: a confirmed view carries
// the code of the secret its client presented.
func changeFor(s *stream, u Update, confirmed *login.View) change {
	c := change{version: u.Version, status: u.Status, data: u.Data}
	if confirmed != nil && s.code != "" {
		v := *confirmed
		v.Code = s.code
		if data, err := json.Marshal(v); err == nil { // a view decoded from JSON encodes again
			c.data = data
		}
	}
	return c
}

// resync is called after the transport reconnected, when updates may have
// been missed: every long-poll answers, and every stream is sent its scene's
// current state if it is newer than what the client has.
func (h *Hub) resync() {
	h.mu.Lock()
	for id, e := range h.scenes {
		h.wakeLocked(id, e)
	}
	streams := make([]*stream, 0, len(h.streams))
	for s := range h.streams {
		streams = append(streams, s)
	}
	if h.closed {
		streams = nil
	}
	h.rereads.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.rereads.Done()
		h.reread(streams)
	}()
}

// reread reads each stream's scene again, a few at a time: after a
// reconnect every stream needs it at once, and the store serves the
// requests of clients too.
func (h *Hub) reread(streams []*stream) {
	const parallel = 8
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, s := range streams {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			v, err := s.current(s.ctx)
			if err != nil {
				if s.ctx.Err() == nil {
					h.log.Warn("read scene for stream", "scene_id", s.sceneID, "err", err)
					s.end(fmt.Errorf("read scene: %w", err))
				}
				return
			}
			data, err := json.Marshal(v)
			if err != nil {
				s.end(fmt.Errorf("encode scene view: %w", err))
				return
			}
			h.mu.Lock()
			h.offerLocked(s, change{version: v.Version, status: v.Status, data: data})
			h.mu.Unlock()
		}()
	}
	wg.Wait()
}

func (h *Hub) wakeLocked(id string, e *sceneEntry) {
	for ch := range e.waiters {
		close(ch)
	}
	clear(e.waiters)
	h.dropIfUnusedLocked(id, e)
}

// Changed returns a channel closed at the scene's next change on any
// instance. Register before reading the state, so no change falls between.
func (h *Hub) Changed(sceneID string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	h.mu.Lock()
	e := h.entryLocked(sceneID)
	e.waiters[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		if e := h.scenes[sceneID]; e != nil {
			delete(e.waiters, ch)
			h.dropIfUnusedLocked(sceneID, e)
		}
		h.mu.Unlock()
	}
}

func (h *Hub) entryLocked(id string) *sceneEntry {
	e := h.scenes[id]
	if e == nil {
		e = &sceneEntry{streams: make(map[*stream]struct{}), waiters: make(map[chan struct{}]struct{})}
		h.scenes[id] = e
	}
	return e
}

func (h *Hub) dropIfUnusedLocked(id string, e *sceneEntry) {
	if len(e.streams) == 0 && len(e.waiters) == 0 {
		delete(h.scenes, id)
	}
}

// Acquire reserves one stream or long-poll slot for a client IP.
func (h *Hub) Acquire(ip string) (release func(), err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.draining:
		return nil, &login.Error{Code: login.EUNAVAILABLE, Message: "server is shutting down; reconnect", Err: ErrDraining}
	case h.maxTotal > 0 && h.total >= h.maxTotal:
		return nil, &login.Error{Code: login.EUNAVAILABLE, Message: "too many open streams on this server", RetryAfter: 5 * time.Second}
	case h.maxPerIP > 0 && h.perIP[ip] >= h.maxPerIP:
		return nil, &login.Error{Code: login.ETOOMANY, Message: "too many open streams from your address", RetryAfter: 5 * time.Second}
	}
	h.total++
	h.perIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.total--
			if h.perIP[ip]--; h.perIP[ip] <= 0 {
				delete(h.perIP, ip)
			}
			h.mu.Unlock()
		})
	}, nil
}

// Open reports the number of open streams and long-polls.
func (h *Hub) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// heartbeats sends a comment to every stream periodically, so proxies and
// clients see a live connection and dead ones are found by the write deadline.
func (h *Hub) heartbeats(ctx context.Context) {
	// Spread the heartbeats over the period in slots: one burst to every
	// stream at once (10 000 writes and flushes) would stall the scans
	// being pushed at that moment (it showed as a 100 ms p99 in the load
	// test). Each stream still gets one heartbeat per period.
	slots := int(min(max(h.heartbeat/(100*time.Millisecond), 1), 64))
	t := time.NewTicker(h.heartbeat / time.Duration(slots))
	defer t.Stop()
	hb := &sse.Event{Comment: []byte("hb")}
	var due []string
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		slot := uint32(tick % slots)
		due = due[:0]
		h.mu.Lock()
		for s := range h.streams {
			if s.live && !s.ended && s.slot%uint32(slots) == slot {
				due = append(due, s.id)
			}
		}
		h.mu.Unlock()
		for _, id := range due {
			h.srv.TryPublish(id, hb) // a full queue already has something to send
		}
	}
}

// Drain begins shutdown: new streams are refused, every long-poll answers
// now, and the hub ends every open stream with a hint to reconnect
// (elsewhere). It returns when all streams have ended or ctx is done; then
// the streams still writing are cut.
func (h *Hub) Drain(ctx context.Context) error {
	h.mu.Lock()
	h.draining = true
	for id, e := range h.scenes {
		h.wakeLocked(id, e)
	}
	for s := range h.streams {
		s.end(ErrDraining)
	}
	h.mu.Unlock()

	done := make(chan struct{})
	go func() {
		h.mu.Lock()
		for len(h.streams) > 0 {
			h.idle.Wait()
		}
		h.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.mu.Lock()
		for s := range h.streams {
			s.abort(ctx.Err())
		}
		h.mu.Unlock()
		return ctx.Err()
	}
}

// Close stops the heartbeat and the transport. Streams should be drained
// first; any still open are cut.
func (h *Hub) Close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	// Streams on hijacked connections are not net/http's any more: end any
	// still open and wait for them to close their connections (each write
	// has a deadline). The library removes each stream as its subscriber
	// leaves; its Close would strand a subscriber still leaving.
	h.mu.Lock()
	h.closed = true
	for s := range h.streams {
		s.abort(errHubClosed)
	}
	h.mu.Unlock()
	h.detached.Wait()
	h.rereads.Wait()
}

// localTransport delivers updates within this process.
type localTransport struct{ h *Hub }

func (t localTransport) Publish(_ context.Context, u Update) error {
	t.h.deliver(u)
	return nil
}

func (t localTransport) Run(ctx context.Context, _ func(Update), _ func()) error {
	<-ctx.Done()
	return nil
}

// slotOf spreads streams over heartbeat slots (FNV-1a of the id).
func slotOf(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h
}
