package ssetest

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReader(t *testing.T) {
	stream := "retry: 3000\nid: 1\nevent: pending\ndata: {\"a\":1}\n\n" +
		": hb\n\n" +
		"id: 2\ndata: {\"b\":2}\nevent: confirmed\n\n" +
		"retry: 1000\n\n" +
		"id: 3\ndata: cut"
	rd := NewReader(strings.NewReader(stream))
	want := []Event{
		{ID: "1", Event: "pending", Data: `{"a":1}`, Retry: "3000", Dispatched: true},
		{ID: "2", Event: "confirmed", Data: `{"b":2}`, Dispatched: true},
		{ID: "2", Retry: "1000"},
	}
	for i, w := range want {
		got, err := rd.Next()
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Fatalf("event %d: %+v, %v; want %+v", i, got, err, w)
		}
	}
	if ev, err := rd.Next(); err != io.EOF {
		t.Fatalf("an incomplete block must not be returned: %+v, %v", ev, err)
	}
}

// The cases follow the standard's rules one by one.
func TestReaderFollowsTheStandard(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		want         []Event
	}{
		{"no space after the colon", "id:7\nevent:x\ndata:d\n\n",
			[]Event{{ID: "7", Event: "x", Data: "d", Dispatched: true}}},
		{"only one space is removed", "data:  two\n\n",
			[]Event{{Data: " two", Dispatched: true}}},
		{"data lines joined with LF", "data: a\ndata:\ndata: c\n\n",
			[]Event{{Data: "a\n\nc", Dispatched: true}}},
		{"a field name alone has an empty value", "data\n\n",
			[]Event{{Dispatched: true}}},
		{"CRLF line ends", "id: 1\r\ndata: a\r\ndata: b\r\n\r\n",
			[]Event{{ID: "1", Data: "a\nb", Dispatched: true}}},
		{"CR line ends", "id: 1\rdata: a\r\rdata: b\r\r",
			[]Event{{ID: "1", Data: "a", Dispatched: true}, {ID: "1", Data: "b", Dispatched: true}}},
		{"the last event ID is kept", "id: 5\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
			[]Event{{ID: "5", Data: "a", Dispatched: true}, {ID: "5", Data: "b", Dispatched: true}, {Data: "c", Dispatched: true}}},
		{"an id with NUL is ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			[]Event{{ID: "1", Data: "a", Dispatched: true}, {ID: "1", Data: "b", Dispatched: true}}},
		{"a retry that is not all digits is ignored", "retry: 10s\ndata: a\n\nretry: -1\n\n",
			[]Event{{Data: "a", Dispatched: true}}},
		{"the event type does not carry over", "event: x\n\ndata: a\n\n",
			[]Event{{Data: "a", Dispatched: true}}},
		{"unknown fields and comments are ignored", "foo: bar\n: note\ndata: a\n\n",
			[]Event{{Data: "a", Dispatched: true}}},
		{"a leading BOM is dropped", "\uFEFFdata: a\n\n",
			[]Event{{Data: "a", Dispatched: true}}},
		{"a colon in the value stays", "data: a: b\n\n",
			[]Event{{Data: "a: b", Dispatched: true}}},
		{"invalid UTF-8 becomes U+FFFD", "data: a\xffb\n\n",
			[]Event{{Data: "a\uFFFDb", Dispatched: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(NewReader(strings.NewReader(tc.stream)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReaderWithComments(t *testing.T) {
	rd := NewReader(strings.NewReader(": hb\n\n:\n: x\ndata: a\n\n"), WithComments())
	got, err := readAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Comments: []string{" hb"}}, {Data: "a", Dispatched: true, Comments: []string{"", " x"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestReaderRefusesAnEndlessLine(t *testing.T) {
	long := io.MultiReader(strings.NewReader("data: "), iotest.OneByteReader(strings.NewReader(strings.Repeat("x", MaxLine+1))))
	if _, err := NewReader(long).Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("error %v, want ErrLineTooLong", err)
	}
}

// readAll returns every block until the stream ends.
func readAll(rd *Reader) ([]Event, error) {
	var out []Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}
