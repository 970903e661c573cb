package iplimit

import (
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for ip, want := range map[string]string{
		"203.0.113.7":                   "203.0.113.7",
		"::ffff:203.0.113.7":            "203.0.113.7",
		"2001:db8:1:2::1":               "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff:ffff:1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":               "2001:db8:1:3::/64",
		"fe80::1%eth0":                  "fe80::/64",
		"::1":                           "::/64",
		"not an ip":                     "not an ip",
	} {
		if got := Key(ip); got != want {
			t.Errorf("Key(%q) = %q, want %q", ip, got, want)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := New(3)
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if _, ok := l.Allow("2001:db8:1:2::a", now); !ok {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	// Another address in the same /64 shares the bucket; another /64 does not.
	if wait, ok := l.Allow("2001:db8:1:2::b", now); ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("same /64 beyond the burst: %v %v", wait, ok)
	}
	if _, ok := l.Allow("2001:db8:1:3::a", now); !ok {
		t.Fatal("another /64 refused")
	}
	if _, ok := l.Allow("2001:db8:1:2::a", now.Add(21*time.Second)); !ok {
		t.Fatal("no token back after 20 s at 3 a minute")
	}
	// Buckets idle for minutes are forgotten (they are full again anyway).
	l.Allow("192.0.2.9", now.Add(5*time.Minute))
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after the sweep, want 1", n)
	}
	if _, ok := New(0).Allow("192.0.2.1", now); !ok {
		t.Fatal("0 must mean unlimited")
	}
}
