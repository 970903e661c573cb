// Command wxlogin-load measures wxlogin next to the bare libraries it is
// built on, on one machine, in one run:
//
//   - wxlogin: N clients hold SSE streams of their own scenes (and M poll),
//     while the tool acts as WeChat and sends signed SCAN callbacks at a
//     fixed rate; it reports scan→client latency, lost and duplicated
//     notifications, errors, and the server's memory and goroutines.
//   - sse-baseline: the same N streams and paced publishes on a bare
//     r3labs/sse server (sse.New() defaults, or -sse-tuned).
//   - poll / echo-baseline: closed-loop request rate of the poll endpoint and
//     of a bare Echo handler returning a constant JSON, same generator.
//   - callbacks: signed callbacks per second on bbolt, then a kill -9 and a
//     check that every count the server acknowledged is on disk.
//   - compare: all of the above, with each figure as a ratio to its baseline.
//   - sweep: wxlogin and sse-baseline at several waiter counts (for the plot).
//
// Servers are started as children (so RSS and threads come from /proc), one
// after the other, each with its own 20 000 open files. Every run is bounded
// in time and stops by itself. See BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	Mode        string
	Waiters     int
	Pollers     int
	Rate        float64
	Duration    time.Duration
	URL         string
	ServerBin   string
	Token       string
	Sources     int
	Ramp        int
	Conns       int
	PollScenes  int
	CBScenes    int
	Users       int
	JSON        string
	Sweep       string
	SSETuned    bool
	Dir         string
	RampTimeout time.Duration
	Grace       time.Duration
}

func main() {
	var o options
	serve := flag.String("serve", "", "internal: run a baseline server (sse-baseline|echo-baseline) in this process")
	flag.StringVar(&o.Mode, "mode", "wxlogin", "wxlogin | sse-baseline | poll | echo-baseline | callbacks | compare | sweep")
	flag.IntVar(&o.Waiters, "waiters", 1000, "SSE streams held open")
	flag.IntVar(&o.Pollers, "pollers", 0, "clients polling their own scene at the advertised interval (wxlogin mode)")
	flag.Float64Var(&o.Rate, "rate", 200, "scans (signed callbacks) or publishes per second")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the measured phase of each run")
	flag.StringVar(&o.URL, "url", "", "a running wxlogin (started with WECHAT_TOKEN=-token, WXLOGIN_SCENE_RATE=0, WXLOGIN_MAX_STREAMS_PER_IP=0); empty: start one as a child")
	flag.StringVar(&o.ServerBin, "server-bin", "", "wxlogin binary to start; empty: go build the module in the current directory")
	flag.StringVar(&o.Token, "token", "wxlogin-load-token", "WECHAT_TOKEN the server checks callback signatures with")
	flag.IntVar(&o.Sources, "sources", 8, "loopback source addresses to spread connections over (127.0.0.1…)")
	flag.IntVar(&o.Ramp, "ramp", 64, "streams being opened at once while ramping up")
	flag.IntVar(&o.Conns, "conns", 64, "connections of the closed-loop generators (poll, echo-baseline, callbacks)")
	flag.IntVar(&o.PollScenes, "poll-scenes", 0, "scenes the poll run spreads over (0: enough for 1.2× the echo baseline's rate, or 20 000)")
	flag.IntVar(&o.CBScenes, "callback-scenes", 20000, "scenes created for the callbacks run (each is scanned once)")
	flag.IntVar(&o.Users, "users", 500, "distinct WeChat users (openids) whose login counts go up")
	flag.StringVar(&o.JSON, "json", "", "append one JSON report line per run to this file")
	flag.StringVar(&o.Sweep, "sweep", "1000,2000,5000,10000,15000,19000", "waiter counts for -mode=sweep")
	flag.BoolVar(&o.SSETuned, "sse-tuned", false, "baseline r3labs/sse with wxlogin's stream settings (BufferSize 8, no replay) instead of sse.New() defaults")
	flag.StringVar(&o.Dir, "dir", "", "where server logs and databases go (default: a new temporary directory)")
	flag.DurationVar(&o.RampTimeout, "ramp-timeout", 3*time.Minute, "give up connecting the waiters after this long")
	flag.DurationVar(&o.Grace, "grace", 5*time.Second, "how long owed events may take after the last scan before they count as lost")
	flag.Parse()

	if *serve != "" {
		if err := serveBaseline(*serve, o.SSETuned); err != nil {
			fmt.Fprintln(os.Stderr, "wxlogin-load:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wxlogin-load:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// run executes one mode. failed is true when a correctness check failed
// (a lost or duplicated notification, a wrong event, a count not on disk).
func run(ctx context.Context, o options) (failed bool, err error) {
	lim, err := raiseFileLimit()
	if err != nil {
		return false, err
	}
	need := o.Waiters + o.Pollers + o.Conns + 200
	if o.Mode != "sweep" && uint64(need) > lim {
		return false, fmt.Errorf("%d waiters and pollers need about %d open files; the limit is %d", o.Waiters+o.Pollers, need, lim)
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "wxlogin-load-"); err != nil {
			return false, err
		}
		defer os.RemoveAll(o.Dir)
	}
	if o.URL == "" && o.ServerBin == "" && needsWxlogin(o.Mode) {
		if o.ServerBin, err = buildServer(ctx, o.Dir); err != nil {
			return false, err
		}
	}
	r := &runner{o: o, d: newSourceDialer(o.Sources)}
	fmt.Printf("wxlogin-load: mode=%s waiters=%d pollers=%d rate=%.0f/s duration=%s, %d CPUs, open-file limit %d\n",
		o.Mode, o.Waiters, o.Pollers, o.Rate, o.Duration, numCPU(), lim)
	switch o.Mode {
	case "wxlogin", "sse-baseline":
		rep, err := r.waiters(ctx, o.Mode, o.Waiters)
		if err != nil {
			return false, err
		}
		r.print(rep)
		return rep.failed(), nil
	case "echo-baseline":
		rep, err := r.echo(ctx)
		if err != nil {
			return false, err
		}
		r.print(rep)
		return false, nil
	case "poll":
		rep, err := r.poll(ctx, o.PollScenes)
		if err != nil {
			return false, err
		}
		r.print(rep)
		return rep.failed(), nil
	case "callbacks":
		rep, err := r.callbacks(ctx)
		if err != nil {
			return false, err
		}
		r.print(rep)
		return rep.failed(), nil
	case "compare":
		return r.compare(ctx)
	case "sweep":
		return r.sweep(ctx)
	}
	return false, fmt.Errorf("-mode=%q: want wxlogin, sse-baseline, poll, echo-baseline, callbacks, compare or sweep", o.Mode)
}

func needsWxlogin(mode string) bool {
	return mode != "sse-baseline" && mode != "echo-baseline"
}

// buildServer compiles the wxlogin module in the current directory.
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "wxlogin-server")
	cmd := execCommand(ctx, "go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build the server (run from the repository root, or pass -server-bin): %v\n%s", err, out)
	}
	return bin, nil
}

func parseList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sweep: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
