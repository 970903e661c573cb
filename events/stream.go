package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/r3labs/sse/v2"

	"wxlogin/login"
)

// StreamRequest describes one authorised client stream of a waiting scene.
type StreamRequest struct {
	SceneID string
	// Current reads the scene's current view, with this client's code.
	Current func(ctx context.Context) (login.View, error)
	// Code is this client's one-time code (login.CodeFor of the secret it
	// presented), part of every "confirmed" event it is sent.
	Code string
	// LastEventID is the version the client already has (0 for none).
	LastEventID uint64
	// Done, when set, is called once after the stream has ended and its
	// connection is closed. Serve may return before that (see conn.go).
	Done func()
}

// Why a stream ends, as the cause of its context.
var (
	errEnded      = errors.New("stream ended")
	errClientGone = errors.New("client closed the connection")
	errSlowClient = errors.New("client does not read its stream")
	errHubClosed  = errors.New("event hub closed")
)

// stream is one client's event stream. Each has an r3labs stream of its own:
// what a client is sent depends on the client (the versions it has, the code
// of the secret it presented), so the hub decides per stream and publishes
// only complete events, which the library queues, frames and writes. The
// library creates the stream when its one subscriber arrives and removes it
// when the subscriber leaves (AutoStream), so nothing here counts subscribers.
type stream struct {
	id      string // the library's stream id: scene id and a per-hub serial number
	sceneID string
	code    string
	slot    uint32 // heartbeat slot
	ctx     context.Context
	cancel  context.CancelCauseFunc
	current func(context.Context) (login.View, error)
	rc      *http.ResponseController

	// Guarded by Hub.mu.
	live  bool    // the first event is out: later ones go through the library
	sent  uint64  // newest version sent or queued
	early *change // newest change that came before the first event
	ended bool    // the terminal event and the end are queued
}

// change is one version of a scene as one client is to see it.
type change struct {
	version uint64
	status  login.Status
	data    []byte // the poll endpoint's JSON, with this client's code
}

// end cancels the stream; the first cause given is the one that counts.
func (s *stream) end(cause error) { s.cancel(cause) }

// abort ends the stream now, also when it is blocked writing to a client
// that stopped reading.
func (s *stream) abort(cause error) {
	s.cancel(cause)
	_ = s.rc.SetWriteDeadline(time.Now())
}

// Serve streams a scene to one client until a terminal status, the client
// leaving, or shutdown. The caller has checked the secret and that the scene
// is still waiting, and holds a slot from Acquire, to be released in Done.
//
// An HTTP/1.x connection is taken over and Serve returns at once; the
// stream goes on in a goroutine of its own (conn.go says why). Otherwise
// Serve returns when the stream ends.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, req StreamRequest) {
	if cw := h.detach(w, r); cw != nil {
		ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
		go h.serveDetached(ctx, cancel, cw, req)
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	h.serve(ctx, cancel, w, req)
	if req.Done != nil {
		req.Done()
	}
}

// detach hijacks the connection for a stream of its own goroutine, unless
// the hub is closed (Close waits for those goroutines) or it cannot. The
// hijack itself is outside the lock: net/http waits there for its
// background read to stop, and every publish takes this lock.
func (h *Hub) detach(w http.ResponseWriter, r *http.Request) *connResponse {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.detached.Add(1)
	h.mu.Unlock()
	cw := hijack(w, r)
	if cw == nil {
		h.detached.Done()
	}
	return cw
}

// serveDetached runs a stream on a hijacked connection, on a fresh goroutine
// whose resting frames are small (stack_test.go keeps them so).
func (h *Hub) serveDetached(ctx context.Context, cancel context.CancelCauseFunc, cw *connResponse, req StreamRequest) {
	defer h.detached.Done()
	defer func() {
		// net/http's and Echo's recovery cover the handler's goroutine only,
		// which has returned: a panic here would end the process.
		if p := recover(); p != nil {
			h.log.Error("stream failed", "scene_id", req.SceneID, "panic", p, "stack", string(debug.Stack()))
		}
		cancel(errEnded)
		cw.end(time.Second)
		if req.Done != nil {
			req.Done()
		}
	}()
	go cw.watchClose(func() { cancel(errClientGone) })
	h.serve(ctx, cancel, cw, req)
}

// serve runs the library's handler for one stream on w, and tells the
// client to reconnect if the hub ended the stream for a shutdown.
func (h *Hub) serve(ctx context.Context, cancel context.CancelCauseFunc, w http.ResponseWriter, req StreamRequest) {
	s := h.open(ctx, cancel, w, req)
	if s == nil {
		return
	}
	defer h.closeStream(s)
	h.srv.ServeHTTP(&streamWriter{ResponseWriter: w, hub: h, s: s}, libraryRequest(ctx, s.id))
	if errors.Is(context.Cause(ctx), ErrDraining) && !h.hasEnded(s) {
		// A bare retry field is valid SSE: the client reconnects soon, to
		// another instance behind the balancer.
		_ = s.rc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
		if _, err := io.WriteString(w, "retry: 1000\n\n"); err == nil {
			_ = s.rc.Flush()
		}
	}
}

// open registers a stream, or answers 503 and returns nil when the hub is
// shutting down.
func (h *Hub) open(ctx context.Context, cancel context.CancelCauseFunc, w http.ResponseWriter, req StreamRequest) *stream {
	s := &stream{
		sceneID: req.SceneID,
		code:    req.Code,
		ctx:     ctx,
		cancel:  cancel,
		current: req.Current,
		rc:      http.NewResponseController(w),
		sent:    req.LastEventID,
	}
	h.mu.Lock()
	if h.draining || h.closed {
		h.mu.Unlock()
		cancel(ErrDraining)
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return nil
	}
	h.serial++
	s.id = req.SceneID + "/" + strconv.FormatUint(h.serial, 10)
	s.slot = slotOf(s.id)
	h.entryLocked(req.SceneID).streams[s] = struct{}{}
	h.streams[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// libraryRequest is the request r3labs/sse is given: it picks the stream by
// ?stream= only, and it keeps the request for the stream's whole life, so it
// gets a small new one rather than the client's with all its headers. The
// client's Last-Event-ID was handled already (the library would answer a
// non-numeric one with a plain-text 400).
func libraryRequest(ctx context.Context, streamID string) *http.Request {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/?stream="+url.QueryEscape(streamID), nil)
	if err != nil {
		panic(fmt.Sprintf("events: request for stream %q: %v", streamID, err)) // cannot happen: the URL is escaped
	}
	return r
}

// closeStream forgets a stream whose library handler has returned. The
// library removes its own stream once its subscriber has left (it watches
// the request's context, cancelled here).
func (h *Hub) closeStream(s *stream) {
	s.end(errEnded)
	h.mu.Lock()
	delete(h.streams, s)
	if e := h.scenes[s.sceneID]; e != nil {
		delete(e.streams, s)
		h.dropIfUnusedLocked(s.sceneID, e)
	}
	h.idle.Broadcast()
	h.mu.Unlock()
}

func (h *Hub) hasEnded(s *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.ended
}

// start sends a stream's first event: the scene's current state, read once
// the library has subscribed the client, so no later change is missed.
// Changes that came in the meantime were kept (early) and the newer one
// goes out after it.
func (h *Hub) start(s *stream, w http.ResponseWriter) {
	v, err := s.current(s.ctx)
	if err != nil {
		if s.ctx.Err() == nil {
			// Unknown now (swept) or storage failed: end; the client
			// reconnects and gets a clear answer.
			h.log.Warn("read scene for stream", "scene_id", s.sceneID, "err", err)
		}
		s.end(fmt.Errorf("read scene: %w", err))
		return
	}
	if err := WriteEvent(w, v, h.retry); err != nil {
		s.end(err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s.live = true
	s.sent = v.Version
	if v.Status.Terminal() {
		h.finishLocked(s)
		return
	}
	if c := s.early; c != nil {
		s.early = nil
		h.offerLocked(s, *c)
	}
}

// offerLocked queues a change for a stream unless the client has it. Before
// the first event it is kept instead (only the newest matters).
func (h *Hub) offerLocked(s *stream, c change) {
	switch {
	case s.ended || c.version <= s.sent:
		return
	case !s.live:
		if s.early == nil || c.version > s.early.version {
			s.early = &c
		}
		return
	}
	s.sent = c.version
	h.publishLocked(s, &sse.Event{
		ID:    []byte(strconv.FormatUint(c.version, 10)),
		Event: []byte(c.status),
		Data:  c.data,
	})
	if c.status.Terminal() {
		h.finishLocked(s)
	}
}

// finishLocked queues the end of a stream after its terminal event. An event
// with neither data nor comment makes the library's handler return once it
// has written everything queued before it (ending the subscription instead
// could drop the terminal event: LIBRARY-NOTES.md).
func (h *Hub) finishLocked(s *stream) {
	s.ended = true
	h.publishLocked(s, &sse.Event{})
}

// publishLocked queues an event without blocking. A full queue (8 events in
// the stream, 64 at its subscriber) means the client has stopped reading:
// its stream is ended, as mercure does, and on reconnect it gets the current
// state.
func (h *Hub) publishLocked(s *stream, ev *sse.Event) {
	if s.ctx.Err() != nil {
		return
	}
	if !h.srv.TryPublish(s.id, ev) {
		h.log.Warn("stream queue full; ending the stream", "scene_id", s.sceneID)
		s.abort(errSlowClient)
	}
}

// streamWriter is the http.ResponseWriter r3labs/sse writes to: it adds the
// first event when the library writes the headers (the client is subscribed
// by then) and bounds every flush with a write deadline, ending the stream
// when one fails.
type streamWriter struct {
	http.ResponseWriter
	hub *Hub
	s   *stream
}

func (w *streamWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code == http.StatusOK {
		w.hub.start(w.s, w.ResponseWriter)
	}
}

// Flush is http.Flusher, which r3labs/sse requires; it ends each event.
func (w *streamWriter) Flush() {
	_ = w.s.rc.SetWriteDeadline(time.Now().Add(w.hub.writeTimeout))
	if err := w.s.rc.Flush(); err != nil {
		w.s.end(fmt.Errorf("write stream: %w", err))
	}
}

// WriteEvent writes one SSE event for a view: id = version, event = status,
// data = the view's JSON, and an optional retry hint.
func WriteEvent(out io.Writer, v login.View, retry time.Duration) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if retry > 0 {
		if _, err := fmt.Fprintf(out, "retry: %d\n", retry.Milliseconds()); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(out, "id: %d\nevent: %s\ndata: %s\n\n", v.Version, v.Status, data)
	return err
}

// ParseLastEventID reads a Last-Event-ID header: a version number, or 0 when
// absent or not ours (a junk value is ignored, not an error).
func ParseLastEventID(s string) uint64 {
	if s == "" || len(s) > 20 {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
