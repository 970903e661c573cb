package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"wxlogin/storage"
	"wxlogin/wechat"
)

var replyCount = regexp.MustCompile(`第 (\d+) 次`)

// callbacks sends signed SCAN callbacks as fast as conns senders can, each
// to its own pending scene, then kills the server with SIGKILL the moment
// the last answer arrives and checks on disk that every login count the
// server acknowledged to "WeChat" is there, once.
func (r *runner) callbacks(ctx context.Context) (rep Report, err error) {
	rep = Report{Mode: "callbacks", Time: time.Now().UTC(), Duration: r.o.Duration.Seconds(), Scenes: r.o.CBScenes}
	var cpu0 float64
	rep.Machine, cpu0 = machineStart(r.o.Dir)
	defer func() { rep.Machine.finish(cpu0) }()
	srv, err := r.startWxlogin(ctx, "callbacks", r.o.Conns)
	if err != nil {
		return rep, err
	}
	defer srv.kill()
	hc := r.d.httpClient(r.o.Conns, 15*time.Second)
	defer hc.CloseIdleConnections()
	t := newWxloginTarget(srv.URL, r.o.Token, hc, r.o.Users)
	scenes, rate, err := createScenes(ctx, t, r.o.CBScenes, r.o.Conns)
	if err != nil {
		return rep, err
	}
	rep.CreateRate = rate
	fmt.Printf("  callbacks: %d scenes created at %.0f/s\n", len(scenes), rate)

	var (
		mu     sync.Mutex
		counts = make(map[string][]int64) // openid → the counts WeChat was told
		cut    = make(map[string]int)     // openid → callbacks cut by the end of the run, answer unread
		next   atomic.Int64
		errs   atomic.Int64
		last   atomic.Value
		rtt    latencies
	)
	runCtx, cancel := context.WithTimeout(ctx, r.o.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range r.o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(scenes) {
					return
				}
				openID := t.users[i%len(t.users)]
				t0 := time.Now()
				// Alternate first follows (subscribe + qrscene_) and follower scans.
				reply, err := t.sim.Send(runCtx, wechat.ScanEvent(scenes[i].SceneID, openID, i%2 == 0, time.Now()))
				m := replyCount.FindStringSubmatch(reply.Text)
				switch {
				case err != nil && runCtx.Err() != nil:
					// Cut by the end of the run: maybe committed, not acknowledged.
					mu.Lock()
					cut[openID]++
					mu.Unlock()
					return
				case err != nil:
					errs.Add(1)
					last.Store(err.Error())
					continue
				case reply.Status != http.StatusOK || m == nil:
					errs.Add(1)
					last.Store(fmt.Sprintf("callback answered %d %q", reply.Status, reply.Body))
					continue
				}
				rtt.add(time.Since(t0))
				n, _ := strconv.ParseInt(m[1], 10, 64)
				mu.Lock()
				counts[openID] = append(counts[openID], n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// A crash right after the last acknowledgement: what WeChat was told
	// must be on disk.
	srv.kill()

	acked := 0
	for _, c := range counts {
		acked += len(c)
	}
	rep.Requests, rep.PollErrors = int64(acked), errs.Load()
	rep.RPS = float64(acked) / elapsed.Seconds()
	rep.CallbackRTT = rtt.percentiles()
	if e, ok := last.Load().(string); ok {
		rep.LastErr = e
	}
	if r.o.URL != "" {
		return rep, nil // not our process: no crash, no file to check
	}
	mismatches, checked, err := checkCounts(ctx, filepath.Join(r.o.Dir, "callbacks.db"), counts, cut)
	if err != nil {
		return rep, err
	}
	durable := mismatches == 0
	rep.Durable, rep.Mismatches, rep.UsersOnDisk = &durable, mismatches, checked
	return rep, nil
}

// checkCounts opens the database after the crash and compares each user's
// login count with the replies: every acknowledged count is on disk (the
// stored count is at least the highest one told), no count was told twice,
// and nothing was counted that was not sent (at most the acknowledged plus
// the callbacks cut, unanswered, by the end of the run).
func checkCounts(ctx context.Context, path string, counts map[string][]int64, cut map[string]int) (mismatches, checked int, err error) {
	db, err := storage.OpenBolt(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reopen the database after kill -9: %w", err)
	}
	defer db.Close()
	for openID, got := range counts {
		checked++
		slices.Sort(got)
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			mismatches++
			fmt.Printf("  user %s: a count was told twice: %v\n", openID, got)
			continue
		}
		u, err := db.User(ctx, openID)
		if err != nil {
			mismatches++
			fmt.Printf("  user %s: %d logins acknowledged, none on disk (%v)\n", openID, len(got), err)
			continue
		}
		low, high := got[len(got)-1], int64(len(got)+cut[openID])
		if u.LoginCount < low || u.LoginCount > high {
			mismatches++
			fmt.Printf("  user %s: %d on disk, want %d…%d (%d acknowledged, highest %d, %d cut)\n",
				openID, u.LoginCount, low, high, len(got), low, cut[openID])
		}
	}
	return mismatches, checked, nil
}
