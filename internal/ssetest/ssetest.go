// Package ssetest reads Server-Sent Events as a browser's EventSource does
// (the WHATWG HTML standard, "Interpreting an event stream"): CRLF, LF or CR
// line ends, an optional single space after the colon, data lines joined
// with "\n", comments, id, event and retry fields. Tests and the load tool
// share it.
package ssetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Event is what one block of a stream (up to a blank line) did.
type Event struct {
	// ID is the stream's last event ID after the block: set by an id field
	// (one without NUL), kept from earlier blocks otherwise.
	ID string
	// Event is the event type; empty means the default, "message".
	Event string
	// Data is the block's data lines joined by "\n".
	Data string
	// Retry is the block's retry field if it had a valid one (digits only):
	// the client's new reconnection time in milliseconds.
	Retry string
	// Dispatched is whether the block dispatched an event (it had a data
	// field). A block with only a retry field dispatches nothing.
	Dispatched bool
	// Comments are the block's comment lines without the colon; only
	// filled by a Reader that returns comments (WithComments).
	Comments []string
}

// MaxLine bounds one line; a longer one is an error, not a growing buffer.
const MaxLine = 1 << 20

// ErrLineTooLong is returned for a line longer than MaxLine.
var ErrLineTooLong = errors.New("sse: line too long")

// Reader parses a stream.
type Reader struct {
	br          *bufio.Reader
	comments    bool
	started     bool // the first line was read (a leading BOM is dropped)
	afterCR     bool // the last line ended with CR: a following LF belongs to it
	lastEventID string
	line        []byte // reused for each line
}

// Option configures a Reader.
type Option func(*Reader)

// WithComments makes Next return blocks that hold only comments too
// (heartbeats), with their text in Event.Comments.
func WithComments() Option { return func(r *Reader) { r.comments = true } }

// NewReader reads events from r. A *bufio.Reader is used as it is.
func NewReader(r io.Reader, opts ...Option) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 512)}
	for _, o := range opts {
		o(rd)
	}
	return rd
}

// Next returns the next block that dispatched an event or set the retry
// time (or, WithComments, held a comment). It returns the read error
// (io.EOF when the stream ended) once no complete block is left: a block
// cut off before its blank line is dropped, as the standard says.
func (r *Reader) Next() (Event, error) {
	var (
		ev      Event
		data    strings.Builder
		hasData bool
	)
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if line == "" {
			ev.ID = r.lastEventID
			if hasData {
				ev.Data = strings.TrimSuffix(data.String(), "\n")
				ev.Dispatched = true
			}
			if ev.Dispatched || ev.Retry != "" || len(ev.Comments) > 0 {
				return ev, nil
			}
			ev = Event{}
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if field == "" { // the line starts with a colon
			if r.comments {
				ev.Comments = append(ev.Comments, value)
			}
			continue
		}
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			ev.Event = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastEventID = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				ev.Retry = value
			}
		}
	}
}

// readLine returns the next line without its end (CRLF, LF or CR), with
// invalid UTF-8 replaced by U+FFFD. A line the stream ends in the middle of
// is dropped with the read error.
func (r *Reader) readLine() (string, error) {
	r.line = r.line[:0]
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			return "", err
		}
		if r.afterCR {
			r.afterCR = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			r.afterCR = true
			return r.finishLine(r.line), nil
		case '\n':
			return r.finishLine(r.line), nil
		}
		if len(r.line) >= MaxLine {
			return "", fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, MaxLine)
		}
		r.line = append(r.line, b)
	}
}

func (r *Reader) finishLine(line []byte) string {
	if !r.started {
		r.started = true
		line = bytes.TrimPrefix(line, []byte("\uFEFF"))
	}
	return strings.ToValidUTF8(string(line), "\uFFFD")
}
