package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loopResult is a closed-loop throughput run.
type loopResult struct {
	OK       int64
	SlowDown int64 // 429 answers
	Errors   int64
	Elapsed  time.Duration
	Latency  Percentiles
	Starved  float64 // share of worker time spent waiting for a scene whose interval had not passed
	LastErr  string
}

func (r loopResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// pollAnswer is the part of a poll answer (or the constant JSON) the
// generator reads: both sides decode the same fields, so the cost is equal.
type pollAnswer struct {
	SceneID  string `json:"scene_id"`
	Status   string `json:"status"`
	Interval int    `json:"interval"`
}

// job is one request a worker makes; next reports when its scene may be
// polled again.
type job interface {
	request(ctx context.Context) (*http.Request, error)
	done(status int, a pollAnswer, retryAfter time.Duration, end time.Time)
	readyAt() time.Time
}

// jobQueue hands out jobs in the order they become ready.
type jobQueue struct {
	mu   sync.Mutex
	jobs []job
}

func (q *jobQueue) pop() job {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.jobs) == 0 {
		return nil
	}
	j := q.jobs[0]
	q.jobs = q.jobs[1:]
	return j
}

func (q *jobQueue) push(j job) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	q.mu.Unlock()
}

// closedLoop runs conns workers for d, each sending its next request as soon
// as the previous one is answered (and its job is ready).
func closedLoop(ctx context.Context, hc *http.Client, q *jobQueue, conns int, d time.Duration) loopResult {
	var res loopResult
	var ok, slow, errs, starvedNs atomic.Int64
	var lastErr atomic.Value
	var lat latencies
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				j := q.pop()
				if j == nil {
					time.Sleep(time.Millisecond)
					starvedNs.Add(int64(time.Millisecond))
					continue
				}
				if wait := time.Until(j.readyAt()); wait > 0 {
					starvedNs.Add(int64(wait))
					select {
					case <-ctx.Done():
						q.push(j)
						return
					case <-time.After(wait):
					}
				}
				t0 := time.Now()
				status, ans, retry, err := doOne(ctx, hc, j)
				end := time.Now()
				switch {
				case err != nil && ctx.Err() != nil:
				case err != nil:
					errs.Add(1)
					lastErr.Store(err.Error())
				case status == http.StatusOK:
					ok.Add(1)
					lat.add(end.Sub(t0))
				case status == http.StatusTooManyRequests:
					slow.Add(1)
				default:
					errs.Add(1)
					lastErr.Store(fmt.Sprintf("status %d", status))
				}
				j.done(status, ans, retry, end)
				q.push(j)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.OK, res.SlowDown, res.Errors = ok.Load(), slow.Load(), errs.Load()
	res.Latency = lat.percentiles()
	res.Starved = float64(starvedNs.Load()) / float64(int64(conns)*int64(res.Elapsed))
	if e, ok := lastErr.Load().(string); ok {
		res.LastErr = e
	}
	return res
}

func doOne(ctx context.Context, hc *http.Client, j job) (int, pollAnswer, time.Duration, error) {
	req, err := j.request(ctx)
	if err != nil {
		return 0, pollAnswer{}, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, pollAnswer{}, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, pollAnswer{}, 0, err
	}
	var a pollAnswer
	var retry time.Duration
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(b, &a); err != nil {
			return 0, a, 0, fmt.Errorf("decode answer: %w", err)
		}
	case http.StatusTooManyRequests:
		n, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		retry = time.Duration(max(n, 1)) * time.Second
	}
	return resp.StatusCode, a, retry, nil
}

// constJob is the echo baseline's request: always ready.
type constJob struct{ url string }

func (j constJob) request(ctx context.Context) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
}
func (j constJob) done(int, pollAnswer, time.Duration, time.Time) {}
func (j constJob) readyAt() time.Time                             { return time.Time{} }

// pollJob polls one scene, respecting the interval it is told and any
// slow_down answer.
type pollJob struct {
	url, auth string
	next      time.Time
}

func (j *pollJob) request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", j.auth)
	return req, nil
}

func (j *pollJob) done(status int, a pollAnswer, retry time.Duration, end time.Time) {
	switch {
	case status == http.StatusOK && a.Interval > 0:
		j.next = end.Add(time.Duration(a.Interval) * time.Second)
	case status == http.StatusTooManyRequests:
		j.next = end.Add(retry)
	default:
		j.next = end.Add(2 * time.Second)
	}
}

func (j *pollJob) readyAt() time.Time { return j.next }

var errNoScenes = errors.New("no scenes to poll")
