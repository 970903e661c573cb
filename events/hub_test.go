package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/login"
)

// fakeScenes is the state a test's streams read: version and status per scene.
type fakeScenes struct {
	mu sync.Mutex
	m  map[string]login.View
}

func (f *fakeScenes) set(v login.View) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[v.SceneID] = v
}

func (f *fakeScenes) get(id string) login.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[id]
}

// newTestHub serves /s/{id} as a stream of scene id, with code "CODE-id".
func newTestHub(t *testing.T, opts ...Option) (*Hub, *fakeScenes, *httptest.Server) {
	t.Helper()
	h := NewHub(opts...)
	scenes := &fakeScenes{m: map[string]login.View{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/s/")
		release, err := h.Acquire("ip")
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		h.Serve(w, r, StreamRequest{
			SceneID: id,
			Code:    "CODE-" + id,
			Current: func(context.Context) (login.View, error) { return scenes.get(id), nil },
			Done:    release,
		})
	}))
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return h, scenes, srv
}

type rawEvent = ssetest.Event

// readEvents reads a stream's events (not comments) into a channel.
func readEvents(t *testing.T, url string) (chan rawEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan rawEvent, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		defer resp.Body.Close()
		rd := ssetest.NewReader(resp.Body)
		for {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			out <- ev
		}
	}()
	return out, func() { cancel(); <-done }
}

func next(t *testing.T, ch chan rawEvent) rawEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return rawEvent{}
}

func view(id string, version uint64, st login.Status) login.View {
	return login.View{SceneID: id, Status: st, Version: version, Interval: 2, ExpiresAt: time.Unix(1e9, 0).UTC()}
}

func TestStreamSendsCurrentThenChangesThenEnds(t *testing.T) {
	h, scenes, srv := newTestHub(t)
	scenes.set(view("a", 1, login.StatusPending))
	events, stop := readEvents(t, srv.URL+"/s/a")
	defer stop()

	first := next(t, events)
	if first.ID != "1" || first.Event != "pending" || first.Retry != "3000" {
		t.Fatalf("first event %+v", first)
	}
	v := view("a", 2, login.StatusConfirmed)
	scenes.set(v)
	h.Notify(context.Background(), v)
	ev := next(t, events)
	if ev.ID != "2" || ev.Event != "confirmed" || !strings.HasSuffix(ev.Data, `,"code":"CODE-a"}`) {
		t.Fatalf("confirmed event %+v", ev)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("event after the terminal one")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream not closed after the terminal event")
	}
}

func TestStreamSkipsVersionsAlreadySent(t *testing.T) {
	h, scenes, srv := newTestHub(t)
	// The change is committed before the client connects but published after:
	// the client gets it once, as the current state.
	scenes.set(view("b", 2, login.StatusScanned))
	events, stop := readEvents(t, srv.URL+"/s/b")
	defer stop()
	if ev := next(t, events); ev.ID != "2" || ev.Event != "scanned" {
		t.Fatalf("first %+v", ev)
	}
	h.Notify(context.Background(), view("b", 2, login.StatusScanned))
	h.Notify(context.Background(), view("b", 3, login.StatusDenied))
	if ev := next(t, events); ev.ID != "3" || ev.Event != "denied" {
		t.Fatalf("want denied v3 next, got %+v", ev)
	}
}

func TestHeartbeat(t *testing.T) {
	_, scenes, srv := newTestHub(t, WithHeartbeat(50*time.Millisecond))
	scenes.set(view("c", 1, login.StatusPending))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/s/c", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := ssetest.NewReader(resp.Body, ssetest.WithComments())
	for {
		ev, err := rd.Next()
		if err != nil {
			t.Fatalf("no heartbeat comment: %v", err)
		}
		if slices.Contains(ev.Comments, " hb") {
			return
		}
	}
}

func TestDrainTellsStreamsToReconnect(t *testing.T) {
	h, scenes, srv := newTestHub(t)
	scenes.set(view("d", 1, login.StatusPending))
	events, stop := readEvents(t, srv.URL+"/s/d")
	defer stop()
	next(t, events)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if ev := next(t, events); ev.Retry == "" || ev.Data != "" {
		t.Fatalf("want a bare retry hint, got %+v", ev)
	}
	if _, err := h.Acquire("ip"); err == nil {
		t.Fatal("new streams accepted while draining")
	}
}

func TestAcquireLimits(t *testing.T) {
	h := NewHub(WithLimits(3, 2))
	defer h.Close()
	r1, err := h.Acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Acquire("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Acquire("a"); login.ErrorCode(err) != login.ETOOMANY {
		t.Fatalf("third from one IP: %v", err)
	}
	if _, err := h.Acquire("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Acquire("c"); login.ErrorCode(err) != login.EUNAVAILABLE {
		t.Fatalf("over the total: %v", err)
	}
	r1()
	r1() // releasing twice is harmless
	if _, err := h.Acquire("c"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// TestNoGoroutineLeak opens 200 streams, ends them every way a stream ends
// (terminal event, client gone), and checks the goroutine count returns.
func TestNoGoroutineLeak(t *testing.T) {
	h, scenes, srv := newTestHub(t, WithLimits(0, 0))
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()

	const n = 200
	var wg sync.WaitGroup
	stops := make([]func(), n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("leak%d", i)
		scenes.set(view(id, 1, login.StatusPending))
		events, stop := readEvents(t, srv.URL+"/s/"+id)
		stops[i] = stop
		next(t, events)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range events {
			}
		}()
	}
	if got := h.Open(); got != n {
		t.Fatalf("open streams %d, want %d", got, n)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("leak%d", i)
		if i%2 == 0 {
			v := view(id, 2, login.StatusConfirmed)
			scenes.set(v)
			h.Notify(context.Background(), v)
		} else {
			stops[i]()
		}
	}
	wg.Wait()
	for _, stop := range stops {
		stop()
	}
	http.DefaultClient.CloseIdleConnections()

	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		scenesLeft := len(h.scenes)
		h.mu.Unlock()
		now := runtime.NumGoroutine()
		if now <= before+2 && scenesLeft == 0 && h.Open() == 0 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d before, %d after; scenes left %d; open %d\n%s",
				before, now, scenesLeft, h.Open(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestParseLastEventID(t *testing.T) {
	for in, want := range map[string]uint64{"": 0, "7": 7, "x": 0, "-1": 0, "18446744073709551615": 18446744073709551615, "184467440737095516150": 0} {
		if got := ParseLastEventID(in); got != want {
			t.Errorf("ParseLastEventID(%q) = %d, want %d", in, got, want)
		}
	}
}

// A confirmed event carries each client's own code, and its data is the
// poll endpoint's JSON of the view with that code: two clients of one
// scene that presented different secrets each get theirs.
func TestConfirmedEventCarriesEachClientsCode(t *testing.T) {
	h := NewHub()
	scenes := &fakeScenes{m: map[string]login.View{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		h.Serve(w, r, StreamRequest{
			SceneID: "e",
			Code:    code,
			Current: func(context.Context) (login.View, error) {
				v := scenes.get("e")
				if v.Status == login.StatusConfirmed {
					v.Code = code
				}
				return v, nil
			},
		})
	}))
	t.Cleanup(func() { srv.Close(); h.Close() })
	scenes.set(view("e", 1, login.StatusPending))
	one, stopOne := readEvents(t, srv.URL+"/s/e?code=ONE")
	defer stopOne()
	two, stopTwo := readEvents(t, srv.URL+"/s/e?code=TWO")
	defer stopTwo()
	next(t, one)
	next(t, two)

	v := view("e", 2, login.StatusConfirmed)
	v.User = &login.UserView{ID: "u_1", Name: "name", LoginCount: 1}
	scenes.set(v)
	h.Notify(context.Background(), v)
	for code, events := range map[string]chan rawEvent{"ONE": one, "TWO": two} {
		want := v
		want.Code = code
		wantJSON, _ := json.Marshal(want)
		if ev := next(t, events); ev.ID != "2" || ev.Event != "confirmed" || ev.Data != string(wantJSON) {
			t.Errorf("client %s got %+v\nwant data %s", code, ev, wantJSON)
		}
	}
}

// A change published while a new stream is reading its first state is kept
// and sent after it, once and in order, whichever of the two is newer.
func TestChangeDuringFirstReadIsKept(t *testing.T) {
	for _, tc := range []struct {
		name       string
		read, sent uint64 // version the first read returns, version published during it
		want       []string
	}{
		{"published change is newer", 1, 2, []string{"1 pending", "2 scanned"}},
		{"first read saw it already", 2, 2, []string{"2 scanned"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub()
			reading, release := make(chan struct{}), make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.Serve(w, r, StreamRequest{
					SceneID: "h",
					Current: func(context.Context) (login.View, error) {
						close(reading)
						<-release
						st := login.StatusPending
						if tc.read == 2 {
							st = login.StatusScanned
						}
						return view("h", tc.read, st), nil
					},
				})
			}))
			t.Cleanup(func() { srv.Close(); h.Close() })
			// The response's headers go out with the first event: publish
			// while the request waits for them.
			go func() {
				<-reading
				h.Notify(context.Background(), view("h", tc.sent, login.StatusScanned))
				close(release)
			}()
			events, stop := readEvents(t, srv.URL+"/s/h")
			defer stop()
			for _, want := range tc.want {
				if ev := next(t, events); ev.ID+" "+ev.Event != want {
					t.Fatalf("got %s %s, want %s", ev.ID, ev.Event, want)
				}
			}
			h.Notify(context.Background(), view("h", 3, login.StatusDenied))
			if ev := next(t, events); ev.ID+" "+ev.Event != "3 denied" {
				t.Fatalf("got %s %s, want 3 denied", ev.ID, ev.Event)
			}
		})
	}
}

// After the transport reconnects, each stream is sent its scene's current
// state if it changed meanwhile, and nothing if it did not.
func TestResyncSendsMissedChanges(t *testing.T) {
	h, scenes, srv := newTestHub(t)
	scenes.set(view("f", 1, login.StatusPending))
	scenes.set(view("g", 1, login.StatusPending))
	f, stopF := readEvents(t, srv.URL+"/s/f")
	defer stopF()
	g, stopG := readEvents(t, srv.URL+"/s/g")
	defer stopG()
	next(t, f)
	next(t, g)

	scenes.set(view("f", 2, login.StatusScanned)) // committed, its update lost
	h.resync()
	if ev := next(t, f); ev.ID != "2" || ev.Event != "scanned" {
		t.Fatalf("after resync: %+v", ev)
	}
	scenes.set(view("g", 2, login.StatusDenied))
	h.Notify(context.Background(), view("g", 2, login.StatusDenied))
	if ev := next(t, g); ev.ID != "2" || ev.Event != "denied" {
		t.Fatalf("g's next event is %+v, want denied v2 (nothing from the resync)", ev)
	}
}

// The library must see neither the client's Last-Event-ID (a junk one gets
// its plain-text 400) nor our ?stream= rewrite leaking into the caller's
// request, which the access log and Echo still hold.
func TestStreamRequestForLibrary(t *testing.T) {
	h := NewHub()
	defer h.Close()
	scenes := &fakeScenes{m: map[string]login.View{}}
	scenes.set(view("c", 1, login.StatusPending))
	after := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, StreamRequest{
			SceneID: "c",
			Current: func(context.Context) (login.View, error) { return scenes.get("c"), nil },
		})
		after <- r.URL.RawQuery + " " + r.Header.Get("Last-Event-ID")
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/s/c?x=1", nil)
	req.Header.Set("Last-Event-ID", "junk")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "retry: 3000\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	if got := <-after; got != "x=1 junk" {
		t.Fatalf("caller's request changed: %q", got)
	}
}
