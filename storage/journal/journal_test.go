package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// decodeSegment is readSegment on bytes in memory.
func decodeSegment(data []byte) Generation {
	g, _ := readSegment(bytes.NewReader(data))
	return g
}

// Records of a reused segment's older generation, and torn or foreign
// bytes, are never replayed.
func TestDecodeSegment(t *testing.T) {
	rec := func(gen uint64, payload string) []byte { return appendRecord(nil, gen, []byte(payload)) }
	torn := rec(7, "torn")
	torn[len(torn)-1] ^= 1
	tests := []struct {
		name string
		data []byte
		gen  uint64
		want []string
	}{
		{"empty", nil, 0, nil},
		{"zeros", make([]byte, 64), 0, nil},
		{"one generation", bytes.Join([][]byte{rec(7, "a"), rec(7, "b"), make([]byte, 20)}, nil), 7, []string{"a", "b"}},
		{"stale tail of an older generation", bytes.Join([][]byte{rec(9, "new"), rec(7, "old"), rec(7, "older")}, nil), 9, []string{"new"}},
		{"torn record", bytes.Join([][]byte{rec(7, "a"), torn, rec(7, "c")}, nil), 7, []string{"a"}},
		{"short header", bytes.Join([][]byte{rec(7, "a"), {1, 0, 0}}, nil), 7, []string{"a"}},
		{"length past the end", bytes.Join([][]byte{rec(7, "a"), rec(7, "bcdef")[:20]}, nil), 7, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := decodeSegment(tt.data)
			var got []string
			for _, p := range g.Payloads {
				got = append(got, string(p))
			}
			if g.Number != tt.gen || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("gen %d %q, want gen %d %q", g.Number, got, tt.gen, tt.want)
			}
		})
	}
}

// FuzzReadSegment: replay reads files a crash may have left in any state;
// no bytes may make it panic, and what it accepts, written again, reads
// back the same.
func FuzzReadSegment(f *testing.F) {
	f.Add(appendRecord(nil, 3, []byte("payload")))
	f.Add(append(appendRecord(nil, 3, []byte("a")), appendRecord(nil, 2, []byte{9, 9})...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := decodeSegment(data)
		var again []byte
		for _, p := range g.Payloads {
			again = appendRecord(again, g.Number, p)
		}
		if h := decodeSegment(again); h.Number != g.Number || fmt.Sprint(h.Payloads) != fmt.Sprint(g.Payloads) {
			t.Fatalf("round trip: gen %d %q → gen %d %q", g.Number, g.Payloads, h.Number, h.Payloads)
		}
	})
}

// replayed collects what Open hands its replay function.
type replayed struct{ gens []Generation }

func (r *replayed) replay(gens []Generation) error {
	r.gens = append(r.gens, gens...)
	return nil
}

func (r *replayed) String() string {
	var s []string
	for _, g := range r.gens {
		s = append(s, fmt.Sprintf("%d%q", g.Number, g.Payloads))
	}
	return fmt.Sprint(s)
}

func openTest(t *testing.T, path string, checkpointed uint64, cfg Config) (*Journal, *replayed) {
	t.Helper()
	r := &replayed{}
	j, err := Open(path, checkpointed, r.replay, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return j, r
}

func appendDurable(t *testing.T, j *Journal, payload string) uint64 {
	t.Helper()
	seq, err := j.Append([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(t.Context(), seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// Replay hands over exactly the generations beyond the caller's
// checkpoint, oldest first, and appending goes on after the newest.
func TestOpenReplaysGenerationsBeyondCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	j, r := openTest(t, path, 4, Config{}) // generation 5 in segment 0
	if len(r.gens) != 0 {
		t.Fatalf("fresh journal replayed %v", r)
	}
	appendDurable(t, j, "a")
	appendDurable(t, j, "b")
	if _, ok := j.SwitchGeneration(); !ok {
		t.Fatal("switch with records appended: not ok")
	}
	closed, ok := j.SwitchGeneration()
	if ok {
		t.Fatalf("second switch before the first reached the files: %+v", closed)
	}
	appendDurable(t, j, "c") // generation 6 in segment 1
	j.Abandon()

	for _, tt := range []struct {
		checkpointed uint64
		want         string
		next         uint64
	}{
		{4, `[5["a" "b"] 6["c"]]`, 7},
		{5, `[6["c"]]`, 7},
		{6, `[]`, 7},
		{9, `[]`, 10},
	} {
		j, r := openTest(t, path, tt.checkpointed, Config{})
		if r.String() != tt.want || j.generation != tt.next {
			t.Errorf("checkpointed %d: replayed %v, appending generation %d; want %s, %d", tt.checkpointed, r, j.generation, tt.want, tt.next)
		}
		j.Abandon()
	}
}

// A replay that fails fails Open, and writes nothing: the next Open finds
// the same records.
func TestOpenFailedReplayWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	j, _ := openTest(t, path, 0, Config{})
	appendDurable(t, j, "kept")
	j.Abandon()
	refuse := func([]Generation) error { return errors.New("bbolt refused") }
	if _, err := Open(path, 0, refuse, Config{}); err == nil {
		t.Fatal("Open with a failing replay: nil error")
	}
	j, r := openTest(t, path, 0, Config{})
	defer j.Close()
	if r.String() != `[1["kept"]]` {
		t.Fatalf("after a failed replay: %v", r)
	}
}

// Concurrent writers share flushes: many appends, few syncs, and each
// waiter returns only once its record is synced.
func TestWaitGroupsConcurrentWriters(t *testing.T) {
	var mu sync.Mutex
	syncs, syncedEnd := 0, int64(0)
	gate := make(chan struct{})
	cfg := Config{Sync: func(f *os.File, end int64) error {
		<-gate
		mu.Lock()
		defer mu.Unlock()
		syncs++
		syncedEnd = end
		return f.Sync()
	}}
	j, _ := openTest(t, filepath.Join(t.TempDir(), "db"), 0, cfg)
	defer j.Close()
	const writers = 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			seq, err := j.Append(fmt.Appendf(nil, "record %02d", i))
			if err == nil {
				err = j.Wait(context.Background(), seq)
			}
			errs <- err
		})
	}
	for j.LastSeq() < writers { // every record appended while the first flush is held
		time.Sleep(time.Millisecond)
	}
	close(gate) // the first flush took what was there when it began; the rest share one more
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if syncs > 2 {
		t.Errorf("%d syncs for %d concurrent writers: flushes not shared", syncs, writers)
	}
	if want := int64(writers * (recordHeader + len("record 00"))); syncedEnd != want {
		t.Errorf("synced through %d, want %d (every record)", syncedEnd, want)
	}
}
