package events

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
)

// A waiting stream holds four goroutines: the one serving it (serveDetached,
// serve and r3labs' handler loop), the connection watcher, and r3labs'
// stream loop and unsubscriber. At rest the serving one may take 8 KB of
// stack and the others the 2 KB minimum. Any frame on the serving path that
// grows past that doubles the serving stack, 80 MB more at 10 000 waiters
// (BENCHMARKS.md has the figures).
const (
	maxServingStack = 8 << 10
	minStack        = 2 << 10
	// Stack spans cached per P are counted too: about a hundred bytes per
	// stream at 300 streams. A doubling of any stack adds at least 2 KB.
	stackSlack = 1 << 10
)

// TestWaitingStreamStack opens a few hundred real streams (real server, real
// clients) and fails when the goroutine stacks they hold at rest pass the
// budget above. It runs in a child process with a fixed starting stack size
// (GODEBUG=adaptivestackstart=0): otherwise new goroutines start at the
// process's recent average, and resting sizes depend on what ran before.
// The figures come from the runtime after collections, which shrink every
// stack to what its resting frames need, so they are exact.
func TestWaitingStreamStack(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 300 streams")
	}
	if raceBuild() {
		t.Skip("the race detector enlarges every frame; .ci/run runs this test without -race")
	}
	if os.Getenv("WXLOGIN_STACK_TEST") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWaitingStreamStack$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "WXLOGIN_STACK_TEST=child",
			"GODEBUG="+strings.Trim(os.Getenv("GODEBUG")+",adaptivestackstart=0", ","))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	measureWaitingStreamStack(t)
}

func measureWaitingStreamStack(t *testing.T) {
	h, scenes, srv := newTestHub(t, WithLimits(0, 0), WithHeartbeat(time.Hour))
	addr := srv.Listener.Addr().String()
	const n = 300
	for i := range n {
		scenes.set(view(fmt.Sprintf("stack%d", i), 1, login.StatusPending))
	}
	before := readStacks()
	if before.startingSize != minStack {
		t.Fatalf("starting stack size %d, want %d (GODEBUG=adaptivestackstart=0)", before.startingSize, minStack)
	}

	for i := range n {
		_, rd := rawStream(t, addr, fmt.Sprintf("/s/stack%d", i))
		if ev, err := rd.Next(); err != nil || ev.ID != "1" {
			t.Fatalf("stream %d: first event %+v, %v", i, ev, err)
		}
	}
	if got := h.Open(); got != n {
		t.Fatalf("%d streams open, want %d", got, n)
	}

	// The serving goroutines flushed their first event and are on their
	// way to rest: wait until the figures are within the budget, or fail
	// with the last ones.
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := readStacks()
		goroutines := float64(now.goroutines-before.goroutines) / n
		perStream := float64(now.stackBytes-before.stackBytes) / n
		limit := maxServingStack + (goroutines-1)*minStack + stackSlack
		if perStream <= limit {
			t.Logf("%.2f goroutines and %.0f bytes of stack per waiting stream (limit %.0f)", goroutines, perStream, limit)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%.2f goroutines and %.0f bytes of stack per waiting stream, over the limit of %.0f "+
				"(serving goroutine %d, others %d each): a frame on the waiting path grew",
				goroutines, perStream, limit, maxServingStack, minStack)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func raceBuild() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type stackFigures struct {
	goroutines   int64
	stackBytes   int64
	startingSize int64
}

// readStacks collects until stacks have shrunk to their resting size (one
// halving per collection) and reads the runtime's figures.
func readStacks() stackFigures {
	for range 4 {
		runtime.GC()
	}
	samples := []metrics.Sample{
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/gc/stack/starting-size:bytes"},
	}
	metrics.Read(samples)
	return stackFigures{
		goroutines:   int64(samples[0].Value.Uint64()),
		stackBytes:   int64(samples[1].Value.Uint64()),
		startingSize: int64(samples[2].Value.Uint64()),
	}
}
