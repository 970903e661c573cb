package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// A waiting browser holds its stream for minutes and receives a handful of
// events. Left with net/http, each stream keeps the connection's goroutine
// with its deep handler stack (8 KB), a 4 KB read buffer, 6 KB of write
// buffers and the whole request for that time. So an HTTP/1.x stream is
// detached: the handler hijacks the connection and returns, and the stream
// goes on in a goroutine of its own on a connResponse, which keeps only what
// it needs between events (BENCHMARKS.md has the figures). That goroutine
// starts fresh, so no handler or middleware frame is on its stack;
// stack_test.go fails if its resting stack passes 8 KB. HTTP/2 and test
// recorders, which cannot be hijacked, stay on the handler's goroutine with
// the whole middleware chain below them (wxlogin itself serves HTTP/1.x only:
// TLS and HTTP/2 end at the proxy).

// connResponse is an http.ResponseWriter on a hijacked HTTP/1.x connection.
// It writes what net/http would: a status line and headers, then the body in
// chunks (close-delimited for HTTP/1.0), and closes the connection at end.
// It is used by one goroutine at a time, like any ResponseWriter.
type connResponse struct {
	conn        net.Conn
	header      http.Header
	chunked     bool
	wroteHeader bool
	out         []byte // written since the last flush; nil when empty, to keep idle streams small
	err         error
}

// hijack takes the connection of w from net/http, or returns nil when it
// cannot (HTTP/2, a recorder) and nothing has changed. Headers set on w so
// far go out with the response.
func hijack(w http.ResponseWriter, r *http.Request) *connResponse {
	if r.ProtoMajor != 1 {
		return nil
	}
	header := w.Header().Clone()
	// Bytes the client sent after its request (pipelining) have no meaning
	// on an event stream: they are dropped with net/http's read buffer.
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	return &connResponse{conn: conn, header: header, chunked: r.ProtoAtLeast(1, 1)}
}

func (w *connResponse) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// WriteHeader buffers the status line and headers; they go out with the
// first flush.
func (w *connResponse) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	h.Set("Connection", "close") // the stream owns the connection to its end
	if w.chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	_ = h.Write(&head)
	head.WriteString("\r\n")
	w.out = append(w.out, head.Bytes()...)
	w.header = nil // sent; the map is not kept for the stream's life
}

func (w *connResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.chunked {
		w.out = strconv.AppendInt(w.out, int64(len(p)), 16)
		w.out = append(w.out, "\r\n"...)
		w.out = append(w.out, p...)
		w.out = append(w.out, "\r\n"...)
	} else {
		w.out = append(w.out, p...)
	}
	return len(p), nil
}

// FlushError sends what was written, in one write to the connection.
func (w *connResponse) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil || len(w.out) == 0 {
		return w.err
	}
	_, err := w.conn.Write(w.out)
	w.out = nil
	if err != nil {
		w.err = fmt.Errorf("write stream: %w", err)
	}
	return w.err
}

// Flush is http.Flusher, which r3labs/sse requires.
func (w *connResponse) Flush() { _ = w.FlushError() }

// SetWriteDeadline is found by http.ResponseController.
func (w *connResponse) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

// end finishes the response (the last chunk) and closes the connection.
func (w *connResponse) end(timeout time.Duration) {
	if w.err == nil {
		if !w.wroteHeader {
			w.WriteHeader(http.StatusOK)
		}
		if w.chunked {
			w.out = append(w.out, "0\r\n\r\n"...)
		}
		_ = w.conn.SetWriteDeadline(time.Now().Add(timeout))
		_ = w.FlushError()
	}
	_ = w.conn.Close()
}

// watchClose cancels the stream when the client closes the connection or
// it fails, as net/http's background read does for a handler. It returns
// when the connection is closed. Anything the client sends is ignored.
func (w *connResponse) watchClose(cancel context.CancelFunc) {
	defer cancel()
	buf := make([]byte, 1)
	for {
		if _, err := w.conn.Read(buf); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				_ = w.conn.SetWriteDeadline(time.Now()) // unblock a write stuck on a dead peer
			}
			return
		}
	}
}

var _ http.Flusher = (*connResponse)(nil)
