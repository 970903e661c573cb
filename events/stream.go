package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"

	"wxlogin/login"
)

// Comments the hub publishes to make every stream writer act; they never
// reach the client as such.
const (
	resyncComment = "wxlogin-resync"
	drainComment  = "wxlogin-drain"
)

// StreamRequest describes one authorised client stream of a waiting scene.
type StreamRequest struct {
	SceneID string
	// Current reads the scene's current view, with this client's code.
	Current func(ctx context.Context) (login.View, error)
	// Code is this client's one-time code, added to a pushed "confirmed" event.
	Code string
	// LastEventID is the version the client already has (0 for none).
	LastEventID uint64
	// Done, when set, is called once after the stream has ended and its
	// connection is closed. Serve may return before that (see conn.go).
	Done func()
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
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		go h.serveDetached(ctx, cancel, cw, req)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
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

// serveDetached runs a stream on a hijacked connection. It starts on a
// fresh, small goroutine stack, and its resting frames are small, so an
// idle stream's stack stays at a few KB.
func (h *Hub) serveDetached(ctx context.Context, cancel context.CancelFunc, cw *connResponse, req StreamRequest) {
	defer h.detached.Done()
	defer func() {
		// net/http's and Echo's recovery cover the handler's goroutine only,
		// which has returned: a panic here would end the process.
		if p := recover(); p != nil {
			h.log.Error("stream failed", "scene_id", req.SceneID, "panic", p, "stack", string(debug.Stack()))
		}
		cancel()
		cw.end(time.Second)
		if req.Done != nil {
			req.Done()
		}
	}()
	go cw.watchClose(cancel)
	h.serve(ctx, cancel, cw, req)
}

// serve runs the library's handler for one stream on w.
func (h *Hub) serve(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, req StreamRequest) {
	sw := h.open(ctx, cancel, w, req)
	if sw == nil {
		return
	}
	defer h.closeStream(sw)
	h.srv.ServeHTTP(sw, libraryRequest(ctx, req.SceneID))
}

// open registers a stream and returns its writer, or nil when it answered
// already (draining).
//
//go:noinline
func (h *Hub) open(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, req StreamRequest) *streamWriter {
	sw := &streamWriter{
		ResponseWriter: w,
		rc:             http.NewResponseController(w),
		ctx:            ctx,
		cancel:         cancel,
		req:            req,
		hub:            h,
		lastVersion:    req.LastEventID,
	}

	h.mu.Lock()
	if h.draining || h.closed {
		h.mu.Unlock()
		cancel()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return nil
	}
	e := h.entryLocked(req.SceneID)
	if e.refs == 0 {
		h.srv.CreateStream(req.SceneID)
	}
	// Counted from before the library subscribes until OnUnsubscribe, so the
	// stream is never removed under a subscriber (that leaks or hangs).
	e.refs++
	h.streams[sw] = struct{}{}
	h.mu.Unlock()
	return sw
}

// libraryRequest is the request r3labs/sse is given: it picks the stream by
// ?stream= only, and it keeps the request for the stream's whole life, so it
// gets a small new one rather than the client's with all its headers. The
// client's Last-Event-ID was handled already (the library would answer a
// non-numeric one with a plain-text 400).
func libraryRequest(ctx context.Context, sceneID string) *http.Request {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/?stream="+url.QueryEscape(sceneID), nil)
	if err != nil {
		panic(fmt.Sprintf("events: request for stream %q: %v", sceneID, err)) // cannot happen: the URL is escaped
	}
	return r
}

// closeStream forgets a stream whose library handler has returned.
func (h *Hub) closeStream(sw *streamWriter) {
	sw.cancel()
	h.mu.Lock()
	delete(h.streams, sw)
	h.mu.Unlock()
}

// unsubscribed is r3labs' OnUnsubscribe: the subscriber is gone from the
// stream's list, so the stream may be removed if nobody else is on it.
func (h *Hub) unsubscribed(streamID string, _ *sse.Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.scenes[streamID]
	if e == nil {
		return
	}
	if e.refs--; e.refs == 0 {
		h.srv.RemoveStream(streamID)
		h.dropIfUnusedLocked(streamID, e)
	}
	h.idle.Broadcast()
}

// streamWriter sits between r3labs/sse and the connection. The library
// writes each event with several small writes and then flushes; we collect
// them and decide at the flush: skip versions the client already has, add the
// client's code to a confirmed event, end the stream after a terminal status,
// and set a write deadline per event.
type streamWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	ctx    context.Context
	cancel context.CancelFunc
	req    StreamRequest
	hub    *Hub

	buf         bytes.Buffer
	lastVersion uint64
	finished    bool
	resync      atomic.Bool
	drain       atomic.Bool
}

// WriteHeader is called by the library after the subscriber is registered:
// from here on no change is missed, so this is where the current state goes out.
func (w *streamWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code != http.StatusOK {
		return
	}
	w.writeCurrent(true)
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.finished {
		return len(p), nil
	}
	return w.buf.Write(p)
}

// Flush ends one event block from the library.
func (w *streamWriter) Flush() {
	block := w.buf.Bytes()
	w.buf.Reset()
	if w.finished {
		return
	}
	switch {
	case bytes.HasPrefix(block, []byte(": "+resyncComment)):
		w.writeCurrent(false)
	case bytes.HasPrefix(block, []byte(": "+drainComment)):
		// A bare retry field is valid SSE: the client reconnects soon, to
		// another instance behind the balancer.
		w.send([]byte("retry: 1000\n\n"))
		w.finish()
	case bytes.HasPrefix(block, []byte("id: ")):
		w.pushed(block)
	case len(block) > 0:
		w.send(block) // heartbeat comment
	default:
		w.send(nil) // headers
	}
	if w.drain.Load() && !w.finished {
		w.send([]byte("retry: 1000\n\n"))
		w.finish()
	}
}

// pushed handles a status event published by the hub.
func (w *streamWriter) pushed(block []byte) {
	version, status, ok := parseBlock(block)
	if !ok || version <= w.lastVersion {
		return // the client has it already (sent as the current state on connect)
	}
	if status == login.StatusConfirmed && w.req.Code != "" {
		block = addCode(block, w.req.Code)
	}
	w.lastVersion = version
	w.send(block)
	if status.Terminal() {
		w.finish()
	}
}

// writeCurrent sends the scene's current state unless the client has it.
func (w *streamWriter) writeCurrent(first bool) {
	v, err := w.req.Current(w.ctx)
	if err != nil {
		// Unknown now (swept) or storage failed: end; the client reconnects
		// and gets a clear answer.
		w.hub.log.Warn("read scene for stream", "scene_id", w.req.SceneID, "err", err)
		w.finish()
		return
	}
	if v.Version <= w.lastVersion && !first {
		return
	}
	var b bytes.Buffer
	retry := time.Duration(0)
	if first {
		retry = w.hub.retry
	}
	if err := WriteEvent(&b, v, retry); err != nil {
		w.finish()
		return
	}
	w.lastVersion = v.Version
	w.send(b.Bytes())
	if v.Status.Terminal() {
		w.finish()
	}
}

// send writes and flushes with a deadline; a failed write ends the stream.
func (w *streamWriter) send(p []byte) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.hub.writeTimeout))
	if len(p) > 0 {
		if _, err := w.ResponseWriter.Write(p); err != nil {
			w.finish()
			return
		}
	}
	if err := w.rc.Flush(); err != nil {
		w.finish()
	}
}

// abort ends the stream now, also when it is blocked writing to a client
// that stopped reading.
func (w *streamWriter) abort() {
	w.cancel()
	_ = w.rc.SetWriteDeadline(time.Now())
}

// finish stops output and makes the library unsubscribe (it watches the
// request context), which ends its handler loop.
func (w *streamWriter) finish() {
	w.finished = true
	w.cancel()
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

// parseBlock reads the id and event name of a block the library wrote.
func parseBlock(block []byte) (uint64, login.Status, bool) {
	var version uint64
	var status login.Status
	for _, line := range bytes.Split(block, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			n, err := strconv.ParseUint(string(line[4:]), 10, 64)
			if err != nil {
				return 0, "", false
			}
			version = n
		case bytes.HasPrefix(line, []byte("event: ")):
			status = login.Status(line[7:])
		}
	}
	return version, status, version > 0 && status != ""
}

// addCode appends "code" to the data line's JSON object. Code is the last
// field of login.View, so the result equals the poll endpoint's JSON.
func addCode(block []byte, code string) []byte {
	i := bytes.Index(block, []byte("\ndata: "))
	if i < 0 {
		return block
	}
	end := bytes.IndexByte(block[i+1:], '\n')
	if end < 0 {
		return block
	}
	end += i + 1
	if end == 0 || block[end-1] != '}' {
		return block
	}
	codeJSON, _ := json.Marshal(code)
	out := make([]byte, 0, len(block)+len(codeJSON)+10)
	out = append(out, block[:end-1]...)
	out = append(out, `,"code":`...)
	out = append(out, codeJSON...)
	out = append(out, block[end-1:]...)
	return out
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
