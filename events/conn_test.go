package events

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/login"
)

// detachedServer serves /s/{id} like newTestHub, with a header set before
// Serve (as the request-id middleware does), and reports when the handler
// returned and when the stream's Done ran.
func detachedServer(t *testing.T) (h *Hub, scenes *fakeScenes, addr string, returned, done chan string) {
	t.Helper()
	h = NewHub()
	scenes = &fakeScenes{m: map[string]login.View{}}
	returned, done = make(chan string, 8), make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/s/")
		w.Header().Set("X-Request-Id", "req-"+id)
		h.Serve(w, r, StreamRequest{
			SceneID: id,
			Code:    "CODE-" + id,
			Current: func(context.Context) (login.View, error) {
				if id == "panic" {
					panic("test: storage blew up")
				}
				return scenes.get(id), nil
			},
			Done: func() { done <- id },
		})
		returned <- id
	}))
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return h, scenes, srv.Listener.Addr().String(), returned, done
}

// rawGet sends a request line by hand, so the test sees the bytes on the wire.
func rawGet(t *testing.T, addr, path, proto string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET "+path+" "+proto+"\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

// rawStream starts an HTTP/1.1 stream by hand and returns its event reader.
func rawStream(t *testing.T, addr, path string) (net.Conn, *ssetest.Reader) {
	t.Helper()
	conn, br := rawGet(t, addr, path, "HTTP/1.1")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, ssetest.NewReader(resp.Body)
}

func waitFor(t *testing.T, ch chan string, what string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return ""
	}
}

func TestDetachedStreamOnTheWire(t *testing.T) {
	h, scenes, addr, returned, done := detachedServer(t)
	scenes.set(view("w", 1, login.StatusPending))
	_, br := rawGet(t, addr, "/s/w", "HTTP/1.1")

	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("X-Accel-Buffering") != "no" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-w" {
		t.Fatalf("header set before Serve is lost: X-Request-Id %q", got)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || !resp.Close {
		t.Fatalf("framing: transfer-encoding %v, close %v", resp.TransferEncoding, resp.Close)
	}
	if resp.Header.Get("Date") == "" {
		t.Fatal("no Date header")
	}
	rd := ssetest.NewReader(resp.Body)
	if ev, err := rd.Next(); err != nil || ev.ID != "1" || ev.Event != "pending" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	// The handler has returned: the stream runs on without it.
	waitFor(t, returned, "the handler to return")
	select {
	case <-done:
		t.Fatal("Done called while the stream is open")
	default:
	}

	v := view("w", 2, login.StatusConfirmed)
	scenes.set(v)
	h.Notify(context.Background(), v)
	ev, err := rd.Next()
	if err != nil || ev.ID != "2" || !strings.HasSuffix(ev.Data, `,"code":"CODE-w"}`) {
		t.Fatalf("confirmed event %+v, %v", ev, err)
	}
	// A clean end: the last chunk, then EOF (a cut stream would be
	// io.ErrUnexpectedEOF from the chunked reader).
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the terminal event: %q, %v", rest, err)
	}
	if got := waitFor(t, done, "Done"); got != "w" {
		t.Fatalf("Done for %q", got)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed after the stream: %v", err)
	}
}

// An HTTP/1.0 client cannot read chunks: the body ends with the connection.
func TestDetachedStreamHTTP10(t *testing.T) {
	h, scenes, addr, _, done := detachedServer(t)
	scenes.set(view("old", 1, login.StatusPending))
	_, br := rawGet(t, addr, "/s/old", "HTTP/1.0")

	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, ProtoMajor: 1, ProtoMinor: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 {
		t.Fatalf("framing: transfer-encoding %v, length %d", resp.TransferEncoding, resp.ContentLength)
	}
	rd := ssetest.NewReader(resp.Body)
	if ev, err := rd.Next(); err != nil || ev.ID != "1" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	v := view("old", 2, login.StatusExpired)
	scenes.set(v)
	h.Notify(context.Background(), v)
	if ev, err := rd.Next(); err != nil || ev.Event != "expired" {
		t.Fatalf("expired event %+v, %v", ev, err)
	}
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the terminal event: %v", err)
	}
	waitFor(t, done, "Done")
}

// A client that goes away ends its stream: Done runs, the slot is free.
func TestDetachedStreamClientLeaves(t *testing.T) {
	_, scenes, addr, _, done := detachedServer(t)
	scenes.set(view("gone", 1, login.StatusPending))
	conn, rd := rawStream(t, addr, "/s/gone")
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, done, "Done after the client left")
}

// Close without Drain must not hang on a stream nobody ends, nor leave its
// connection open.
func TestCloseEndsDetachedStreams(t *testing.T) {
	h, scenes, addr, _, done := detachedServer(t)
	scenes.set(view("open", 1, login.StatusPending))
	_, rd := rawStream(t, addr, "/s/open")
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { h.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on an open stream")
	}
	waitFor(t, done, "Done")
	if _, err := rd.Next(); err == nil {
		t.Fatal("stream still open after Close")
	}
}

// A panic in a stream's goroutine (here while reading the scene) is no
// longer under net/http's recovery: it must end that stream only.
func TestDetachedStreamPanicEndsOnlyThatStream(t *testing.T) {
	h, scenes, addr, _, done := detachedServer(t)
	scenes.set(view("ok", 1, login.StatusPending))
	_, br := rawGet(t, addr, "/s/panic", "HTTP/1.1")
	if got := waitFor(t, done, "Done of the failed stream"); got != "panic" {
		t.Fatalf("Done for %q", got)
	}
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("failed stream's connection: %v", err)
	}
	// Its registration is gone (else Drain would wait for it).
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		left := len(h.streams) + len(h.scenes)
		h.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failed stream is still registered (%d entries)", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The process and the hub go on.
	_, next := rawStream(t, addr, "/s/ok")
	if ev, err := next.Next(); err != nil || ev.ID != "1" {
		t.Fatalf("next stream: %+v, %v", ev, err)
	}
}

// Over HTTP/2 the connection cannot be taken over: the stream stays on the
// handler's goroutine (Serve returns when it ends) and works the same.
func TestAttachedStreamOverHTTP2(t *testing.T) {
	h := NewHub()
	scenes := &fakeScenes{m: map[string]login.View{}}
	scenes.set(view("h2", 1, login.StatusPending))
	returned, done := make(chan string, 1), make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, StreamRequest{
			SceneID: "h2",
			Code:    "CODE-h2",
			Current: func(context.Context) (login.View, error) { return scenes.get("h2"), nil },
			Done:    func() { done <- "h2" },
		})
		returned <- r.Proto
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})

	resp, err := srv.Client().Get(srv.URL + "/s/h2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	rd := ssetest.NewReader(resp.Body)
	if ev, err := rd.Next(); err != nil || ev.ID != "1" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	select {
	case <-returned:
		t.Fatal("the handler returned while its HTTP/2 stream is open")
	case <-time.After(100 * time.Millisecond):
	}
	v := view("h2", 2, login.StatusConfirmed)
	scenes.set(v)
	h.Notify(context.Background(), v)
	if ev, err := rd.Next(); err != nil || !strings.HasSuffix(ev.Data, `,"code":"CODE-h2"}`) {
		t.Fatalf("confirmed event %+v, %v", ev, err)
	}
	if got := waitFor(t, done, "Done"); got != "h2" {
		t.Fatalf("Done for %q", got)
	}
	if proto := waitFor(t, returned, "the handler to return"); proto != "HTTP/2.0" {
		t.Fatalf("handler saw %s", proto)
	}
}
