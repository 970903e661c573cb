package main

import (
	"context"
	"fmt"
	"strings"
)

func (r *runner) print(rep Report) {
	r.appendJSON(rep)
	switch rep.Mode {
	case "wxlogin", "sse-baseline":
		name := rep.Mode
		if rep.SSETuned {
			name += " (tuned)"
		}
		fmt.Printf("%s: %d waiters connected (ramp %.1fs), %d scans at %.0f/s for %.0fs\n",
			name, rep.Connected, rep.RampS, rep.Scans, rep.Rate, rep.Duration)
		fmt.Printf("  scan → event  %s\n", rep.Latency)
		fmt.Printf("  scan answered %s\n", rep.CallbackRTT)
		fmt.Printf("  acked %d, failed %d, notified %d, LOST %d, DUPLICATED %d, bad events %d, unexpected %d\n",
			rep.Acked, rep.Failed, rep.Notified, rep.Lost, rep.Duplicated, rep.BadEvents, rep.Unexpected)
		fmt.Printf("  connect errors %d, stream errors %d, early disconnects %d, ticks without a waiter %d\n",
			rep.ConnectErrs, rep.StreamErrs, rep.Disconnects, rep.NoReady)
		if rep.Pollers > 0 {
			fmt.Printf("  pollers %d: %d ok, %d slow_down, %d errors\n", rep.Pollers, rep.PollOK, rep.PollSlowDown, rep.PollErrors)
		}
		fmt.Printf("  server RSS idle %d KB, loaded %d KB, peak %d KB: %.1f KB/waiter (anon %.1f); goroutines %d → %d (%.2f/waiter); threads %d\n",
			rep.IdleRSSKB, rep.LoadedRSSKB, rep.PeakRSSKB, rep.RSSPerWaiter, rep.AnonPerWaiter, rep.IdleG, rep.LoadedG, rep.GPerWaiter, rep.Threads)
	case "echo-baseline", "poll":
		fmt.Printf("%s: %.0f req/s (%d ok over %.0fs, %d conns), latency %s\n", rep.Mode, rep.RPS, rep.Requests, rep.Duration, r.o.Conns, rep.Latency)
		if rep.Mode == "poll" {
			fmt.Printf("  %d scenes (created at %.0f/s), %d slow_down, %d errors, workers waited for a ready scene %.0f%% of the time\n",
				rep.Scenes, rep.CreateRate, rep.PollSlowDown, rep.PollErrors, 100*rep.Starved)
		}
	case "callbacks":
		fmt.Printf("callbacks: %.0f signed callbacks/s acknowledged (%d in %.1fs max, %d conns), %d errors, answered %s\n",
			rep.RPS, rep.Requests, rep.Duration, r.o.Conns, rep.PollErrors, rep.CallbackRTT)
		if rep.Durable != nil {
			fmt.Printf("  after kill -9: %d users checked, %d count mismatches → durable=%v\n", rep.UsersOnDisk, rep.Mismatches, *rep.Durable)
		}
	}
	fmt.Printf("  %s\n", rep.Machine)
	if rep.ServerWarns > 0 {
		fmt.Printf("  server logged %d warnings/errors\n", rep.ServerWarns)
	}
	if rep.LastErr != "" {
		fmt.Printf("  last error: %s\n", rep.LastErr)
	}
}

// compare runs everything once and prints each figure against its target
// and its baseline.
func (r *runner) compare(ctx context.Context) (bool, error) {
	wx, err := r.waiters(ctx, "wxlogin", r.o.Waiters)
	if err != nil {
		return false, err
	}
	r.print(wx)
	base, err := r.waiters(ctx, "sse-baseline", r.o.Waiters)
	if err != nil {
		return false, err
	}
	r.print(base)
	echo, err := r.echo(ctx)
	if err != nil {
		return false, err
	}
	r.print(echo)
	scenes := r.o.PollScenes
	if scenes <= 0 {
		// Enough scenes that wxlogin could poll at 1.2× the baseline's
		// rate without ever polling a scene faster than its 2 s interval.
		scenes = max(2000, int(echo.RPS*2*1.2))
	}
	poll, err := r.poll(ctx, scenes)
	if err != nil {
		return false, err
	}
	r.print(poll)
	cb, err := r.callbacks(ctx)
	if err != nil {
		return false, err
	}
	r.print(cb)

	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	check := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-44s %14s %14s %8s  %s\n", "figure", "wxlogin", "baseline", "ratio", "target")
	row := func(name, a, bb, rt, target string) {
		fmt.Fprintf(&b, "%-44s %14s %14s %8s  %s\n", name, a, bb, rt, target)
	}
	kb := func(f float64) string { return fmt.Sprintf("%.1f KB", f) }
	msf := func(f float64) string { return fmt.Sprintf("%.2f ms", f) }
	row(fmt.Sprintf("RSS per waiter (%d streams)", wx.Connected), kb(wx.RSSPerWaiter), kb(base.RSSPerWaiter),
		ratio(wx.RSSPerWaiter, base.RSSPerWaiter),
		fmt.Sprintf("≤ 40 KB, ≤ 1.4× %s", check(wx.RSSPerWaiter <= 40 && wx.RSSPerWaiter <= 1.4*base.RSSPerWaiter)))
	row("goroutines per waiter", fmt.Sprintf("%.2f", wx.GPerWaiter), fmt.Sprintf("%.2f", base.GPerWaiter), ratio(wx.GPerWaiter, base.GPerWaiter), "")
	row(fmt.Sprintf("scan→event p50 at %.0f/s", r.o.Rate), msf(wx.Latency.P50), msf(base.Latency.P50), ratio(wx.Latency.P50, base.Latency.P50),
		"≤ 2 ms "+check(wx.Latency.P50 <= 2))
	row("scan→event p95", msf(wx.Latency.P95), msf(base.Latency.P95), ratio(wx.Latency.P95, base.Latency.P95), "")
	row("scan→event p99", msf(wx.Latency.P99), msf(base.Latency.P99), ratio(wx.Latency.P99, base.Latency.P99),
		"≤ 20 ms "+check(wx.Latency.P99 <= 20))
	row("scan→event max", msf(wx.Latency.Max), msf(base.Latency.Max), ratio(wx.Latency.Max, base.Latency.Max), "")
	row("lost / duplicated", fmt.Sprintf("%d / %d", wx.Lost, wx.Duplicated), fmt.Sprintf("%d / %d", base.Lost, base.Duplicated), "",
		"0 / 0 "+check(wx.Lost == 0 && wx.Duplicated == 0))
	row("poll req/s vs Echo constant JSON", fmt.Sprintf("%.0f", poll.RPS), fmt.Sprintf("%.0f", echo.RPS), ratio(poll.RPS, echo.RPS),
		"≥ 0.5× "+check(poll.RPS >= 0.5*echo.RPS))
	durable := cb.Durable != nil && *cb.Durable
	row("signed callbacks/s on bbolt (durable)", fmt.Sprintf("%.0f", cb.RPS), "", "",
		fmt.Sprintf("≥ 1000, durable=%v %s", durable, check(cb.RPS >= 1000 && durable)))
	fmt.Print(b.String())
	return wx.failed() || poll.failed() || cb.failed(), nil
}

// sweep measures wxlogin and the r3labs baseline at each waiter count.
func (r *runner) sweep(ctx context.Context) (bool, error) {
	ns, err := parseList(r.o.Sweep)
	if err != nil {
		return false, err
	}
	failed := false
	for _, n := range ns {
		for _, kind := range []string{"wxlogin", "sse-baseline"} {
			rep, err := r.waiters(ctx, kind, n)
			if err != nil {
				return failed, fmt.Errorf("%s with %d waiters: %w", kind, n, err)
			}
			r.print(rep)
			failed = failed || rep.failed()
		}
	}
	return failed, nil
}
