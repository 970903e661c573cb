package wechat

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestLocalQueryBindingsExpireAndCarry: a binding holds until its time, is
// then forgotten (the query is stale by then anyway), and MarshalBinary /
// UnmarshalBinary carry only bindings still in force.
func TestLocalQueryBindingsExpireAndCarry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	l := NewLocalQueryBindings()
	l.now = clock
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))

	bind := func(q string, h [sha256.Size]byte, until time.Time) bool {
		t.Helper()
		ok, err := l.BindQuery(t.Context(), q, h, until)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !bind("q1", a, now.Add(5*time.Minute)) || !bind("q1", a, now.Add(5*time.Minute)) || bind("q1", b, now.Add(5*time.Minute)) {
		t.Fatal("q1: first body, same body again, other body")
	}
	bind("q2", a, now.Add(time.Minute))

	now = now.Add(2 * time.Minute) // q2 has expired, q1 holds
	data, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	restored := NewLocalQueryBindings()
	restored.now = clock
	if err := restored.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if restored.Len() != 1 {
		t.Fatalf("restored %d bindings, want 1 (q1)", restored.Len())
	}
	if ok, _ := restored.BindQuery(t.Context(), "q1", b, now.Add(5*time.Minute)); ok {
		t.Fatal("restored q1 took another body")
	}
	if ok, _ := restored.BindQuery(t.Context(), "q2", b, now.Add(5*time.Minute)); !ok {
		t.Fatal("an expired binding came back")
	}

	now = now.Add(4 * time.Minute) // q1 expired too: a new body may bind (Fresh refuses the query by then)
	if !bind("q1", b, now.Add(5*time.Minute)) {
		t.Fatal("an expired binding still refused")
	}
	if err := restored.UnmarshalBinary([]byte("not json")); err == nil {
		t.Fatal("garbage restored without error")
	}
	if empty, _ := NewLocalQueryBindings().MarshalBinary(); empty != nil {
		t.Fatalf("nothing to keep encoded as %q", empty)
	}
}
