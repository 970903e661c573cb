package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Report is one run's figures; -json appends it as one line.
type Report struct {
	Mode      string    `json:"mode"`
	Time      time.Time `json:"time"`
	Waiters   int       `json:"waiters,omitempty"`
	Pollers   int       `json:"pollers,omitempty"`
	Rate      float64   `json:"rate,omitempty"`
	Duration  float64   `json:"duration_s"`
	SSETuned  bool      `json:"sse_tuned,omitempty"`
	RampS     float64   `json:"ramp_s,omitempty"`
	Connected int64     `json:"connected,omitempty"`

	Scans        int         `json:"scans,omitempty"`
	Acked        int         `json:"acked,omitempty"`
	Failed       int         `json:"failed,omitempty"`
	Notified     int         `json:"notified,omitempty"`
	Lost         int         `json:"lost"`
	Duplicated   int         `json:"duplicated"`
	BadEvents    int64       `json:"bad_events"`
	Unexpected   int64       `json:"unexpected_events"`
	ConnectErrs  int64       `json:"connect_errors"`
	StreamErrs   int64       `json:"stream_errors"`
	Disconnects  int64       `json:"early_disconnects"`
	NoReady      int64       `json:"scan_ticks_without_waiter,omitempty"`
	Latency      Percentiles `json:"latency"`      // scan/publish sent → event read
	CallbackRTT  Percentiles `json:"callback_rtt"` // scan/publish sent → answered
	PollOK       int64       `json:"poll_ok,omitempty"`
	PollSlowDown int64       `json:"poll_slow_down,omitempty"`
	PollErrors   int64       `json:"poll_errors,omitempty"`

	IdleRSSKB     int64   `json:"idle_rss_kb,omitempty"`
	LoadedRSSKB   int64   `json:"loaded_rss_kb,omitempty"`
	LoadedAnonKB  int64   `json:"loaded_anon_kb,omitempty"`
	IdleAnonKB    int64   `json:"idle_anon_kb,omitempty"`
	PeakRSSKB     int64   `json:"peak_rss_kb,omitempty"`
	RSSPerWaiter  float64 `json:"rss_per_waiter_kb,omitempty"`
	AnonPerWaiter float64 `json:"anon_per_waiter_kb,omitempty"`
	IdleG         int     `json:"idle_goroutines,omitempty"`
	LoadedG       int     `json:"loaded_goroutines,omitempty"`
	GPerWaiter    float64 `json:"goroutines_per_waiter,omitempty"`
	Threads       int     `json:"threads,omitempty"`
	ServerWarns   int64   `json:"server_warnings"`
	CleanStop     bool    `json:"clean_shutdown"`

	RPS      float64 `json:"rps,omitempty"`
	Requests int64   `json:"requests,omitempty"`
	Starved  float64 `json:"starved,omitempty"`
	Scenes   int     `json:"scenes,omitempty"`

	CreateRate  float64 `json:"scene_create_rate,omitempty"`
	Durable     *bool   `json:"durable,omitempty"`
	Mismatches  int     `json:"count_mismatches,omitempty"`
	UsersOnDisk int     `json:"users_checked,omitempty"`

	Machine Machine `json:"machine"`
	LastErr string  `json:"last_error,omitempty"`
}

func (r Report) failed() bool {
	return r.Lost > 0 || r.Duplicated > 0 || r.BadEvents > 0 || r.Unexpected > 0 ||
		(r.Durable != nil && !*r.Durable)
}

type runner struct {
	o options
	d *sourceDialer
}

func numCPU() int { return runtime.NumCPU() }

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// startWxlogin starts the service with the settings a load test needs.
func (r *runner) startWxlogin(ctx context.Context, tag string, streams int) (*server, error) {
	if r.o.URL != "" {
		return remote(r.o.URL), nil
	}
	db := filepath.Join(r.o.Dir, tag+".db")
	_ = os.Remove(db)
	env := []string{
		"WECHAT_APPID=", "WECHAT_APPSECRET=", "WECHAT_AES_KEY=", "WXLOGIN_REDIS_URL=",
		"WXLOGIN_ADDR=127.0.0.1:0",
		"WXLOGIN_DB=" + db,
		"WECHAT_TOKEN=" + r.o.Token,
		"WXLOGIN_SCENE_RATE=0",         // the per-IP creation limit would stop the load
		"WXLOGIN_MAX_STREAMS_PER_IP=0", // so would the per-IP stream cap
		"WXLOGIN_MAX_STREAMS=" + strconv.Itoa(max(15000, streams+100)),
		"WXLOGIN_QR_TTL=900s", // no scene expires during a run
		"WXLOGIN_LOG_FORMAT=text",
	}
	return spawn(ctx, r.o.ServerBin, nil, env, filepath.Join(r.o.Dir, tag+".log"))
}

// startBaseline starts this tool as a bare-library server.
func (r *runner) startBaseline(ctx context.Context, kind string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-serve=" + kind}
	if r.o.SSETuned {
		args = append(args, "-sse-tuned")
	}
	return spawn(ctx, self, args, nil, filepath.Join(r.o.Dir, kind+".log"))
}

// waiters runs the stream scenario on wxlogin or the r3labs baseline.
func (r *runner) waiters(ctx context.Context, kind string, n int) (rep Report, err error) {
	rep = Report{Mode: kind, Time: time.Now().UTC(), Waiters: n, Rate: r.o.Rate,
		Duration: r.o.Duration.Seconds(), SSETuned: kind == "sse-baseline" && r.o.SSETuned}
	var cpu0 float64
	rep.Machine, cpu0 = machineStart(r.o.Dir)
	defer func() { rep.Machine.finish(cpu0) }()
	var srv *server
	if kind == "wxlogin" {
		rep.Pollers = r.o.Pollers
		srv, err = r.startWxlogin(ctx, fmt.Sprintf("wxlogin-%d", n), n+r.o.Pollers)
	} else {
		srv, err = r.startBaseline(ctx, "sse-baseline")
	}
	if err != nil {
		return rep, err
	}
	defer srv.kill()
	hc := r.d.httpClient(256, 15*time.Second)
	defer hc.CloseIdleConnections()

	var t target
	if kind == "wxlogin" {
		t = newWxloginTarget(srv.URL, r.o.Token, hc, r.o.Users)
		// Warm up: one scene end to end, so lazy set-up (WeChat token,
		// pools) is in the idle figure and not charged to the waiters.
		if _, err := t.prepare(ctx); err != nil {
			return rep, fmt.Errorf("warm-up: %w", err)
		}
	} else {
		t = &sseBaselineTarget{base: srv.URL, hc: hc}
	}
	idle := srv.settle(hc, 5*time.Second)
	rep.IdleRSSKB, rep.IdleAnonKB, rep.IdleG = idle.RSSKB, idle.AnonKB, idle.Goroutine

	sc := &scenario{t: t, d: r.d, addr: srv.Addr}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.o.Ramp)
	var firsts atomic.Int64
	allIn := make(chan struct{})
	rampStart := time.Now()
	go func() {
		for range n {
			select {
			case sem <- struct{}{}:
			case <-runCtx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc.runWaiter(runCtx, func() {
					<-sem
					if firsts.Add(1) == int64(n) {
						close(allIn)
					}
				})
			}()
		}
	}()
	select {
	case <-allIn:
	case <-time.After(r.o.RampTimeout):
		fmt.Printf("  ramp: only %d of %d waiters connected within %s\n", sc.connected.Load(), n, r.o.RampTimeout)
	case <-ctx.Done():
		return rep, ctx.Err()
	}
	rep.RampS = time.Since(rampStart).Seconds()
	loaded := srv.settle(hc, 10*time.Second)
	rep.Connected = sc.connected.Load()
	rep.LoadedRSSKB, rep.LoadedAnonKB, rep.LoadedG, rep.Threads = loaded.RSSKB, loaded.AnonKB, loaded.Goroutine, loaded.Threads
	if rep.Connected > 0 && loaded.RSSKB > 0 {
		rep.RSSPerWaiter = float64(loaded.RSSKB-idle.RSSKB) / float64(rep.Connected)
		rep.AnonPerWaiter = float64(loaded.AnonKB-idle.AnonKB) / float64(rep.Connected)
	}
	if rep.Connected > 0 && loaded.Goroutine >= 0 && idle.Goroutine >= 0 {
		rep.GPerWaiter = float64(loaded.Goroutine-idle.Goroutine) / float64(rep.Connected)
	}
	fmt.Printf("  %s: %d streams open after %.1fs; server RSS %d → %d KB (%.1f KB/waiter), goroutines %d → %d\n",
		kind, rep.Connected, rep.RampS, idle.RSSKB, loaded.RSSKB, rep.RSSPerWaiter, idle.Goroutine, loaded.Goroutine)

	var polls pollCounts
	if kind == "wxlogin" && r.o.Pollers > 0 {
		pctx, pcancel := context.WithCancel(runCtx)
		defer pcancel()
		phc := r.d.httpClient(r.o.Pollers, 35*time.Second)
		defer phc.CloseIdleConnections()
		for range r.o.Pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runPoller(pctx, t.(*wxloginTarget), phc, &polls)
			}()
		}
	}
	peak := atomic.Int64{}
	sampleCtx, stopSampling := context.WithCancel(runCtx)
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tk.C:
				if st := srv.stats(hc); st.RSSKB > peak.Load() {
					peak.Store(st.RSSKB)
				}
			}
		}
	}()

	sc.scan(runCtx, r.o.Rate, r.o.Duration)
	out := sc.settleTriggers(r.o.Grace)
	stopSampling()
	rep.PeakRSSKB = max(peak.Load(), loaded.RSSKB)
	cancel()
	wg.Wait()
	rep.CleanStop = srv.stop(15*time.Second) == nil

	rep.Scans, rep.Acked, rep.Failed, rep.Notified = out.Scans, out.Acked, out.Failed, out.Notified
	rep.Lost, rep.Duplicated = out.Lost, out.Duplicated
	rep.BadEvents, rep.Unexpected = sc.badEvents.Load(), sc.unexpected.Load()
	rep.ConnectErrs, rep.StreamErrs, rep.Disconnects = sc.connectErrs.Load(), sc.streamErrs.Load(), sc.disconnected.Load()
	rep.NoReady = sc.noReady.Load()
	rep.Latency, rep.CallbackRTT = sc.events.percentiles(), sc.acks.percentiles()
	rep.PollOK, rep.PollSlowDown, rep.PollErrors = polls.ok.Load(), polls.slow.Load(), polls.errs.Load()
	rep.ServerWarns = srv.warnings()
	if e, ok := sc.lastErr.Load().(string); ok {
		rep.LastErr = e
	}
	return rep, nil
}

type pollCounts struct{ ok, slow, errs atomic.Int64 }

// runPoller is a client that cannot hold a stream: it polls its own scene at
// the interval the server advertises and obeys slow_down.
func runPoller(ctx context.Context, t *wxloginTarget, hc *http.Client, c *pollCounts) {
	sc, err := t.createScene(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.errs.Add(1)
		}
		return
	}
	j := &pollJob{url: t.base + "/api/v1/login/scenes/" + sc.SceneID, auth: "Bearer " + sc.Secret}
	for ctx.Err() == nil {
		status, a, retry, err := doOne(ctx, hc, j)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			c.errs.Add(1)
		case status == http.StatusOK:
			c.ok.Add(1)
		case status == http.StatusTooManyRequests:
			c.slow.Add(1)
		default:
			c.errs.Add(1)
		}
		j.done(status, a, retry, time.Now())
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(j.next)):
		}
	}
}

// echo measures the bare Echo constant-JSON handler.
func (r *runner) echo(ctx context.Context) (rep Report, err error) {
	rep = Report{Mode: "echo-baseline", Time: time.Now().UTC(), Duration: r.o.Duration.Seconds()}
	var cpu0 float64
	rep.Machine, cpu0 = machineStart(r.o.Dir)
	defer func() { rep.Machine.finish(cpu0) }()
	srv, err := r.startBaseline(ctx, "echo-baseline")
	if err != nil {
		return rep, err
	}
	defer srv.kill()
	hc := r.d.httpClient(r.o.Conns, 10*time.Second)
	defer hc.CloseIdleConnections()
	q := &jobQueue{}
	for range r.o.Conns * 2 {
		q.push(constJob{url: srv.URL + "/const"})
	}
	closedLoop(ctx, hc, q, r.o.Conns, time.Second) // warm-up: connections, JIT-free but caches
	res := closedLoop(ctx, hc, q, r.o.Conns, r.o.Duration)
	rep.CleanStop = srv.stop(5*time.Second) == nil
	fillLoop(&rep, res)
	return rep, nil
}

// poll measures the poll endpoint over enough scenes that no scene is polled
// faster than its interval.
func (r *runner) poll(ctx context.Context, scenes int) (rep Report, err error) {
	if scenes <= 0 {
		scenes = 20000
	}
	rep = Report{Mode: "poll", Time: time.Now().UTC(), Duration: r.o.Duration.Seconds(), Scenes: scenes}
	var cpu0 float64
	rep.Machine, cpu0 = machineStart(r.o.Dir)
	defer func() { rep.Machine.finish(cpu0) }()
	srv, err := r.startWxlogin(ctx, "poll", r.o.Conns)
	if err != nil {
		return rep, err
	}
	defer srv.kill()
	hc := r.d.httpClient(r.o.Conns, 10*time.Second)
	defer hc.CloseIdleConnections()
	t := newWxloginTarget(srv.URL, r.o.Token, hc, 1)
	jobs, rate, err := createScenes(ctx, t, scenes, r.o.Conns)
	if err != nil {
		return rep, err
	}
	rep.CreateRate = rate
	q := &jobQueue{}
	now := time.Now()
	for i, sc := range jobs {
		// Spread the first polls over one interval.
		q.push(&pollJob{url: srv.URL + "/api/v1/login/scenes/" + sc.SceneID, auth: "Bearer " + sc.Secret,
			next: now.Add(time.Duration(i) * 2 * time.Second / time.Duration(len(jobs)))})
	}
	res := closedLoop(ctx, hc, q, r.o.Conns, r.o.Duration)
	rep.CleanStop = srv.stop(15*time.Second) == nil
	rep.ServerWarns = srv.warnings()
	fillLoop(&rep, res)
	return rep, nil
}

func fillLoop(rep *Report, res loopResult) {
	rep.RPS, rep.Requests, rep.Latency, rep.Starved = res.RPS(), res.OK, res.Latency, res.Starved
	rep.PollSlowDown, rep.PollErrors, rep.LastErr = res.SlowDown, res.Errors, res.LastErr
}

type createdScene struct{ SceneID, Secret string }

// createScenes makes n scenes with conns creators; it returns them and the
// creation rate.
func createScenes(ctx context.Context, t *wxloginTarget, n, conns int) ([]createdScene, float64, error) {
	out := make([]createdScene, n)
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				sc, err := t.createScene(ctx)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				out[i] = createdScene{sc.SceneID, sc.Secret}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, 0, err
	}
	return out, float64(n) / time.Since(start).Seconds(), ctx.Err()
}

func (r *runner) appendJSON(rep Report) {
	if r.o.JSON == "" {
		return
	}
	f, err := os.OpenFile(r.o.JSON, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wxlogin-load: -json:", err)
		return
	}
	defer f.Close()
	b, _ := json.Marshal(rep)
	f.Write(append(b, '\n'))
}
