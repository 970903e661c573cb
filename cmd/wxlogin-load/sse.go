package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"wxlogin/internal/ssetest"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
	At              time.Time // when its terminating blank line was read
}

// sseStream is one open text/event-stream response, read with the tests'
// SSE parser (the WHATWG rules: fields, comments, multi-line data, CRLF, LF
// or CR line ends).
type sseStream struct {
	conn   net.Conn
	body   io.ReadCloser
	events *ssetest.Reader
	Header http.Header
}

// errNoContent is a 204: the server says there is nothing more to stream.
var errNoContent = errors.New("204 No Content")

// openSSE dials addr, sends one GET for path and returns the stream once the
// response headers arrived. The connection is not pooled: one per stream.
func openSSE(ctx context.Context, d *sourceDialer, addr, path string, header http.Header) (*sseStream, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n", path, addr)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send stream request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read stream response: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	switch {
	case resp.StatusCode == http.StatusNoContent:
		conn.Close()
		return nil, errNoContent
	case resp.StatusCode != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, fmt.Errorf("stream answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		conn.Close()
		return nil, fmt.Errorf("stream content type %q", resp.Header.Get("Content-Type"))
	}
	body := resp.Body
	r := br
	if len(resp.TransferEncoding) > 0 {
		r = bufio.NewReaderSize(body, 1024) // chunked: parse the de-chunked body
	}
	return &sseStream{conn: conn, body: body, events: ssetest.NewReader(r), Header: resp.Header}, nil
}

// Next reads until the next event is dispatched. Comments (heartbeats) and
// blocks that only set the retry time are skipped. io.EOF means the server
// ended the stream.
func (s *sseStream) Next() (sseEvent, error) {
	for {
		ev, err := s.events.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return sseEvent{}, io.EOF
			}
			return sseEvent{}, err
		}
		if ev.Dispatched {
			return sseEvent{ID: ev.ID, Event: ev.Event, Data: ev.Data, At: time.Now()}, nil
		}
	}
}

// SetReadDeadline bounds the next reads.
func (s *sseStream) SetReadDeadline(t time.Time) { _ = s.conn.SetReadDeadline(t) }

// Close drops the connection.
func (s *sseStream) Close() { s.conn.Close() }
