package ssetest

import (
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	stream := "retry: 3000\nid: 1\nevent: pending\ndata: {\"a\":1}\n\n" +
		": hb\n\n" +
		"id: 2\ndata: {\"b\":2}\nevent: confirmed\n\n" +
		"retry: 1000\n\n" +
		"id: 3\ndata: cut"
	rd := NewReader(strings.NewReader(stream))
	want := []Event{
		{ID: "1", Event: "pending", Data: `{"a":1}`, Retry: "3000"},
		{ID: "2", Event: "confirmed", Data: `{"b":2}`},
		{Retry: "1000"},
	}
	for i, w := range want {
		got, err := rd.Next()
		if err != nil || got != w {
			t.Fatalf("event %d: %+v, %v; want %+v", i, got, err, w)
		}
	}
	if ev, err := rd.Next(); err != io.EOF {
		t.Fatalf("an incomplete block must not be returned: %+v, %v", ev, err)
	}
}
