package ssetest

import (
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzReader checks that how a stream is cut into reads and which line end
// it uses change nothing, and that the Reader never fails on any bytes
// short of an endless line.
func FuzzReader(f *testing.F) {
	for _, seed := range []string{
		"retry: 3000\nid: 1\nevent: pending\ndata: {\"a\":1}\n\n: hb\n\n",
		"id:7\ndata:a\ndata\ndata:  b\n\nretry: 1000\n\n",
		"\uFEFFid: 1\x00\nevent\n: c\nfoo\n\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, stream string) {
		whole, err := readAll(NewReader(strings.NewReader(stream), WithComments()))
		if err != nil {
			t.Fatalf("error on %q: %v", stream, err)
		}
		bytewise, err := readAll(NewReader(iotest.OneByteReader(strings.NewReader(stream)), WithComments()))
		if err != nil || !reflect.DeepEqual(whole, bytewise) {
			t.Fatalf("read a byte at a time: %+v, %v\nwhole: %+v", bytewise, err, whole)
		}
		if strings.ContainsRune(stream, '\r') {
			return
		}
		for _, end := range []string{"\r\n", "\r"} {
			got, err := readAll(NewReader(strings.NewReader(strings.ReplaceAll(stream, "\n", end)), WithComments()))
			if err != nil || !reflect.DeepEqual(got, whole) {
				t.Fatalf("with %q line ends: %+v, %v\nwith LF: %+v", end, got, err, whole)
			}
		}
	})
}

// FuzzReaderRoundTrip encodes an event the way a server writes one and
// checks it reads back the same.
func FuzzReaderRoundTrip(f *testing.F) {
	f.Add("1", "pending", "{\"a\":1}")
	f.Add("", "", "two\nlines")
	f.Add(" 7", " x", " lead\n\nempty line")
	f.Fuzz(func(t *testing.T, id, event, data string) {
		if strings.ContainsAny(id+event+data, "\r\x00\uFFFD") || strings.ContainsAny(id+event, "\n") ||
			!validUTF8(id, event, data) {
			return
		}
		var b strings.Builder
		b.WriteString("id: " + id + "\n")
		if event != "" {
			b.WriteString("event: " + event + "\n")
		}
		for _, line := range strings.Split(data, "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		got, err := NewReader(strings.NewReader(b.String())).Next()
		want := Event{ID: id, Event: event, Data: data, Dispatched: true}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q read back as %+v, %v; want %+v", b.String(), got, err, want)
		}
	})
}

func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if strings.ToValidUTF8(s, "") != s {
			return false
		}
	}
	return true
}
