package events_test

import (
	"strconv"
	"testing"

	"wxlogin/events"
)

// FuzzParseLastEventID: a Last-Event-ID is a version number or it is
// ignored (0); junk never panics and never turns into a version.
func FuzzParseLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "42", "18446744073709551615", "18446744073709551616", "-1", "+1", " 1", "1e3", "0x10", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := events.ParseLastEventID(s)
		want, err := strconv.ParseUint(s, 10, 64)
		if err != nil || len(s) > 20 {
			want = 0
		}
		if got != want {
			t.Fatalf("ParseLastEventID(%q) = %d, want %d", s, got, want)
		}
	})
}
