package events

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/login"
)

// BenchmarkNotifyToStream measures the publish path: Hub.Notify of a
// committed change until a real HTTP client has read the event off its
// stream (JSON encoding, r3labs' stream goroutine, the stream writer, the
// socket). Each op pushes a new version of a non-terminal status, so one
// stream carries them all.
func BenchmarkNotifyToStream(b *testing.B) {
	h := NewHub(WithHeartbeat(time.Hour))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, StreamRequest{
			SceneID: "bench-scene-0000000000",
			Code:    "CODE",
			Current: func(context.Context) (login.View, error) {
				return benchView(1, login.StatusPending), nil
			},
		})
	}))
	defer func() { srv.Close(); h.Close() }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	rd := ssetest.NewReader(resp.Body)
	readEvent := func() string {
		ev, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		return ev.ID
	}
	if id := readEvent(); id != "1" {
		b.Fatalf("first event id %s, want 1", id)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Notify(ctx, benchView(uint64(i+2), login.StatusScanned))
		readEvent()
	}
}

// BenchmarkNotifyNoSubscriber is a change nobody on this instance waits for
// (most callbacks on a cluster member): it must stay cheap.
func BenchmarkNotifyNoSubscriber(b *testing.B) {
	h := NewHub(WithHeartbeat(time.Hour))
	defer h.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for i := range b.N {
		h.Notify(ctx, benchView(uint64(i+2), login.StatusConfirmed))
	}
}

func benchView(version uint64, st login.Status) login.View {
	return login.View{SceneID: "bench-scene-0000000000", Status: st, Version: version, Interval: 2,
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		User: &login.UserView{ID: "u_0123456789abcdef", Name: login.DefaultUserName, LoginCount: 3,
			FirstLoginAt: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC), LastLoginAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
}
