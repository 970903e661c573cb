// Package ssetest reads Server-Sent Events the way a test client needs them:
// one dispatched block at a time, with its id, event name, data and retry
// hint. The load tool has its own allocation-free parser; tests share this one.
package ssetest

import (
	"bufio"
	"io"
	"strings"
)

// Event is one block of a stream. Data is empty for a bare retry hint.
type Event struct {
	ID, Event, Data, Retry string
}

// Reader parses a stream.
type Reader struct {
	br *bufio.Reader
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReader(r)} }

// Next returns the next block that carries data or a retry hint; comment
// blocks (heartbeats) are skipped. It returns the read error (io.EOF when
// the server ended the stream) once no complete block is left.
func (r *Reader) Next() (Event, error) {
	var ev Event
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return Event{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.Data != "" || ev.Retry != "" {
				return ev, nil
			}
			ev = Event{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		case strings.HasPrefix(line, "retry: "):
			ev.Retry = line[7:]
		}
	}
}
