package main

// Crash safety: the real binary as a child process, logins running from many
// clients, the process killed at random moments and restarted on the same
// database file. Every login a client saw confirmed must be counted exactly
// once, scenes still pending must survive, and bbolt must pass its
// consistency check at the end.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/storage"
	"wxlogin/wechat"
)

// TestCrashSafety kills the running service at random moments, restarts it
// on the same file, and checks that nothing a client saw was lost or
// doubled. With SIGTERM it checks that the graceful path loses nothing and
// exits 0 within the grace time.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the real binary many times (about a minute)")
	}
	bin := buildWxlogin(t)
	t.Run("SIGKILL", func(t *testing.T) { crashRun(t, bin, syscall.SIGKILL, 12) })
	t.Run("SIGTERM", func(t *testing.T) { crashRun(t, bin, syscall.SIGTERM, 5) })
}

func crashRun(t *testing.T, bin string, sig syscall.Signal, rounds int) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("seed %d", seed)
	cs := newChildService(t, bin, nil)
	cs.start()

	const clients = 12
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stopClients := make(chan struct{})
	all := make([]*loginClient, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range all {
		c := newLoginClient(cs.URL, i, i%2 == 0, seed+uint64(i))
		all[i] = c
		wg.Go(func() {
			if err := c.run(ctx, stopClients); err != nil {
				errs <- fmt.Errorf("client %d (%s): %w\nits last steps:\n%s", i, c.mode(), err, c.lastSteps())
				cancel()
			}
		})
	}

	grace := 5 * time.Second
	for round := range rounds {
		select {
		case <-time.After(time.Duration(200+rng.IntN(1300)) * time.Millisecond):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		code, took := cs.stop(sig)
		switch {
		case sig == syscall.SIGKILL && code != -1:
			t.Errorf("round %d: exit code %d after SIGKILL", round, code)
		case sig == syscall.SIGTERM && code != 0:
			t.Errorf("round %d: exit code %d after SIGTERM, want 0", round, code)
		case sig == syscall.SIGTERM && took > grace:
			t.Errorf("round %d: SIGTERM took %s, longer than the %s grace", round, took, grace)
		}
		// Restart at once or after a short outage.
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		cs.start()
	}

	// Let every client finish the login it is in, with the service up.
	close(stopClients)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// What clients saw against what the service says, over HTTP.
	var logins, pendingSurvived, refused, unanswered, exchangesLost, streamsRetried, streamsCut int
	for _, c := range all {
		logins += c.confirmed
		pendingSurvived += c.pendingSurvived
		refused += c.callbacksRefused
		unanswered += c.callbacksUnanswered
		exchangesLost += c.exchangesLost
		streamsRetried += int(c.streamsRetried.Load())
		streamsCut += int(c.streamsCut.Load())
		c.check(t)
	}
	t.Logf("%s ×%d: %d logins by %d clients; %d scenes pending across a restart completed; "+
		"callbacks resent as WeChat would: %d refused, %d sent but unanswered; exchange answers lost: %d; "+
		"streams ended by a retry hint: %d, cut: %d",
		sig, rounds, logins, clients, pendingSurvived, refused, unanswered, exchangesLost, streamsRetried, streamsCut)
	if logins < clients {
		t.Errorf("only %d logins: the clients barely ran", logins)
	}
	if pendingSurvived == 0 {
		t.Errorf("no scene was pending across a restart: the test did not test that")
	}
	// A kill almost always finds writes not yet checkpointed into bbolt, so
	// restarts replay the journal; a graceful stop leaves nothing to replay.
	replays := cs.replays.Load()
	t.Logf("restarts that replayed the journal: %d of %d", replays, rounds)
	if sig == syscall.SIGKILL && replays == 0 {
		t.Errorf("no restart after kill -9 replayed the journal: the test did not test recovery")
	}
	if sig == syscall.SIGTERM && replays > 0 {
		t.Errorf("%d restarts after SIGTERM replayed the journal: a graceful stop must checkpoint everything", replays)
	}
	if sig == syscall.SIGTERM && streamsCut > 0 {
		t.Errorf("%d streams were cut without a retry hint on a graceful shutdown", streamsCut)
	}

	code, took := cs.stop(syscall.SIGTERM)
	if code != 0 || took > grace {
		t.Errorf("final SIGTERM: exit %d after %s", code, took)
	}
	checkDatabase(t, cs.db, all)
}

// checkDatabase opens the file the way the service does and checks bbolt's
// consistency and every client's login count.
func checkDatabase(t *testing.T, path string, clients []*loginClient) {
	t.Helper()
	store, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatalf("reopen the database: %v", err)
	}
	defer store.Close()
	if err := store.DB().View(checkTx); err != nil {
		t.Errorf("bbolt consistency check: %v", err)
	}
	for _, c := range clients {
		u, err := store.User(context.Background(), c.openID)
		switch {
		case c.confirmed == 0 && err == nil:
			t.Errorf("%s: a user with %d logins, but the client saw none", c.openID, u.LoginCount)
		case c.confirmed == 0:
		case err != nil:
			t.Errorf("%s: %v", c.openID, err)
		case u.LoginCount != int64(c.confirmed):
			t.Errorf("%s: %d logins on disk, the client saw %d confirmed", c.openID, u.LoginCount, c.confirmed)
		}
	}
}

// loginClient logs one WeChat user in again and again, as a browser (SSE)
// or an app (long-polling), and also plays WeChat for its own scans.
type loginClient struct {
	base   string
	openID string
	sse    bool
	rng    *rand.Rand
	hc     *http.Client
	sim    *wechat.Simulator

	confirmed       int     // scenes this client saw confirmed
	replies         []int64 // the "第 n 次" of each confirmed scan's reply
	exchanged       []int64 // login_count returned by each successful exchange
	token           string  // the latest session token
	pendingSurvived int     // scenes seen pending, then a broken connection, then confirmed

	// What crashes did to requests, for the report.
	callbacksRefused    int // the service was down: nothing reached it
	callbacksUnanswered int // sent, and no answer came (the reply, or the scan, was lost)
	exchangesLost       int // the exchange went through but its answer was lost

	streamsRetried atomic.Int32 // streams that ended with a retry hint and no status
	streamsCut     atomic.Int32 // streams that broke without one

	traceMu sync.Mutex
	trace   []string // the client's last steps, for the failure message
}

// note records a step: when a client fails, its last steps are printed.
func (c *loginClient) note(format string, args ...any) {
	c.traceMu.Lock()
	defer c.traceMu.Unlock()
	c.trace = append(c.trace, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	if len(c.trace) > 60 {
		c.trace = c.trace[len(c.trace)-60:]
	}
}

func (c *loginClient) lastSteps() string {
	c.traceMu.Lock()
	defer c.traceMu.Unlock()
	return strings.Join(c.trace, "\n")
}

func newLoginClient(base string, i int, sse bool, seed uint64) *loginClient {
	// No keep-alive: a request on a connection the dying server already
	// closed would fail before it was sent, which says nothing.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return &loginClient{
		base:   base,
		openID: fmt.Sprintf("oCrash_client_%02d_00000000000", i),
		sse:    sse,
		rng:    rand.New(rand.NewPCG(seed, 99)),
		hc:     hc,
		// WeChat waits 5 s for an answer.
		sim: &wechat.Simulator{URL: base + "/wechat/callback", Token: crashToken,
			Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}},
	}
}

func (c *loginClient) mode() string {
	if c.sse {
		return "sse"
	}
	return "poll"
}

// run logs in until stop is closed, finishing the login it is in.
func (c *loginClient) run(ctx context.Context, stop <-chan struct{}) error {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if err := c.loginOnce(ctx, n == 0); err != nil {
			return err
		}
	}
}

// retryable is an error a client retries: the service is down or restarting.
func retryable(err error) bool {
	return err != nil && !errors.Is(err, errFatal) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, context.DeadlineExceeded)
}

var errFatal = errors.New("not retryable")

func (c *loginClient) loginOnce(ctx context.Context, firstFollow bool) error {
	sc, err := c.createScene(ctx)
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	type result struct {
		code string
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		var code string
		var err error
		if c.sse {
			code, err = c.waitStream(ctx, sc, ready)
		} else {
			close(ready) // a long-poll wakes on the change whenever it comes
			code, err = c.waitPoll(ctx, sc)
		}
		waited <- result{code, err}
	}()
	select {
	case <-ready:
	case r := <-waited:
		return fmt.Errorf("scene %s ended before the scan: %v", sc.SceneID, r.err)
	}
	// The person takes a moment to scan.
	time.Sleep(time.Duration(c.rng.IntN(600)) * time.Millisecond)
	if err := c.scan(ctx, sc.SceneID, firstFollow); err != nil {
		return err
	}
	r := <-waited
	if r.err != nil {
		return r.err
	}
	c.confirmed++
	return c.exchange(ctx, sc, r.code)
}

func (c *loginClient) createScene(ctx context.Context) (sceneInfo, error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/login/scenes", nil)
		resp, err := c.hc.Do(req)
		c.note("create scene: %v", err)
		if ctx.Err() != nil {
			return sceneInfo{}, fmt.Errorf("create scene: %w", ctx.Err())
		}
		if err == nil {
			var sc sceneInfo
			err = json.NewDecoder(resp.Body).Decode(&sc)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusCreated && err == nil:
				return sc, nil
			case resp.StatusCode != http.StatusServiceUnavailable:
				return sceneInfo{}, fmt.Errorf("create scene: %d", resp.StatusCode)
			}
		}
		pause(ctx, 50*time.Millisecond)
	}
}

// scan plays WeChat: it posts the scan and, when no answer comes (the
// process died with the request in flight), sends the very same message
// again until one does. The reply says which login of this user it was.
func (c *loginClient) scan(ctx context.Context, sceneID string, firstFollow bool) error {
	ev := wechat.ScanEvent(sceneID, c.openID, firstFollow, time.Now())
	for {
		r, err := c.sim.Send(ctx, ev)
		c.note("scan %s: %d %v", sceneID, r.Status, err)
		if ctx.Err() != nil {
			return fmt.Errorf("scan of %s (last try: %v): %w", sceneID, err, ctx.Err())
		}
		switch {
		case err == nil && r.Status == http.StatusOK:
			n, ok := loginNumber(r.Text)
			if !ok {
				return fmt.Errorf("scan of %s: reply %q", sceneID, r.Text)
			}
			c.replies = append(c.replies, n)
			return nil
		case err == nil && r.Status != http.StatusServiceUnavailable:
			return fmt.Errorf("scan of %s: %d %q", sceneID, r.Status, r.Body)
		}
		switch {
		case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			c.callbacksRefused++
		case err != nil:
			c.callbacksUnanswered++
		}
		pause(ctx, 100*time.Millisecond)
	}
}

// loginNumber is replyCount for a client goroutine, which reports instead
// of failing the test.
func loginNumber(reply string) (int64, bool) {
	m := countInReply.FindStringSubmatch(reply)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	return n, err == nil
}

// waitStream follows the scene's SSE stream, reconnecting with
// Last-Event-ID as EventSource does, until it sees confirmed.
func (c *loginClient) waitStream(ctx context.Context, sc sceneInfo, ready chan struct{}) (string, error) {
	lastID := ""
	pendingThenBroken := false // a connection ended while the scene was pending
	// The person scans once the page shows the QR code: at the first
	// pending event, while the stream stays open for the result. (Closing
	// ready only when a connection ended left a client that started its
	// last login after the last restart waiting for ever.)
	showPending := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
	}
	for {
		code, status, id, err := c.readStream(ctx, sc, lastID, showPending)
		if id != "" {
			lastID = id
		}
		switch {
		case status == "confirmed":
			if pendingThenBroken {
				c.pendingSurvived++
			}
			return code, nil
		case status != "" && status != "pending":
			return "", fmt.Errorf("scene %s: stream ended with %s: %w", sc.SceneID, status, errFatal)
		case !retryable(err):
			return "", err
		}
		pendingThenBroken = pendingThenBroken || status == "pending"
		pause(ctx, 50*time.Millisecond)
	}
}

// readStream reads one connection until confirmed or its end, and returns
// the last status with its code and event id. A connection that ends
// without confirmed returns an error, and is counted: ended by a final
// retry hint (a graceful shutdown) or cut.
func (c *loginClient) readStream(ctx context.Context, sc sceneInfo, lastID string, showPending func()) (code, status, id string, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/login/scenes/"+sc.SceneID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.note("stream %s (Last-Event-ID %q): %v", sc.SceneID, lastID, err)
		return "", "", "", err
	}
	defer resp.Body.Close()
	c.note("stream %s (Last-Event-ID %q): %d", sc.SceneID, lastID, resp.StatusCode)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return "", "", "", errors.New("503: shutting down or starting")
	default:
		return "", "", "", fmt.Errorf("scene %s: stream answered %d: %w", sc.SceneID, resp.StatusCode, errFatal)
	}
	rd := ssetest.NewReader(resp.Body)
	var endedByRetry bool
	for {
		ev, rerr := rd.Next()
		if rerr != nil {
			c.note("stream %s ends: %v (retry hint: %v)", sc.SceneID, rerr, endedByRetry)
			if endedByRetry && rerr == io.EOF {
				c.streamsRetried.Add(1)
				return code, status, id, errors.New("stream ended with a retry hint")
			}
			if ctx.Err() == nil {
				c.streamsCut.Add(1)
			}
			return code, status, id, fmt.Errorf("stream cut: %w", rerr)
		}
		if ev.Data == "" {
			endedByRetry = true // a bare retry hint: the shutdown's last word
			continue
		}
		status, id = ev.Event, ev.ID
		c.note("stream %s: event %s id %s", sc.SceneID, status, id)
		var v struct{ Code string }
		_ = json.Unmarshal([]byte(ev.Data), &v)
		code = v.Code
		endedByRetry = false
		switch status {
		case "confirmed":
			return code, status, id, nil
		case "pending":
			showPending()
		}
	}
}

// waitPoll long-polls until the scene is confirmed, keeping the interval.
func (c *loginClient) waitPoll(ctx context.Context, sc sceneInfo) (string, error) {
	sawPending, pendingThenBroken := false, false
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/login/scenes/"+sc.SceneID+"?wait=10", nil)
		req.Header.Set("Authorization", "Bearer "+sc.Secret)
		resp, err := c.hc.Do(req)
		if ctx.Err() != nil {
			return "", fmt.Errorf("poll %s: %w", sc.SceneID, ctx.Err())
		}
		if err != nil {
			pendingThenBroken = pendingThenBroken || sawPending
			pause(ctx, 50*time.Millisecond)
			continue
		}
		var v viewBody
		derr := json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			pause(ctx, time.Duration(max(secs, 1))*time.Second)
			continue
		case resp.StatusCode == http.StatusServiceUnavailable:
			pendingThenBroken = pendingThenBroken || sawPending
			pause(ctx, 50*time.Millisecond)
			continue
		case resp.StatusCode != http.StatusOK || derr != nil:
			return "", fmt.Errorf("poll %s: %d %v", sc.SceneID, resp.StatusCode, derr)
		case v.Status == "confirmed":
			if pendingThenBroken {
				c.pendingSurvived++
			}
			return v.Code, nil
		case v.Status != "pending":
			return "", fmt.Errorf("poll %s: status %s", sc.SceneID, v.Status)
		}
		sawPending = true
		pause(ctx, time.Duration(v.Interval)*time.Second)
	}
}

// exchange turns the code into a session. When the answer was lost in a
// crash the retry finds the code used: that login still counts once.
func (c *loginClient) exchange(ctx context.Context, sc sceneInfo, code string) error {
	body := fmt.Sprintf(`{"scene_id":%q,"code":%q}`, sc.SceneID, code)
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/login/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+sc.Secret)
		resp, err := c.hc.Do(req)
		c.note("exchange %s: %v", sc.SceneID, err)
		if ctx.Err() != nil {
			return fmt.Errorf("exchange %s: %w", sc.SceneID, ctx.Err())
		}
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		var tok tokenBody
		derr := json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && derr == nil:
			c.token = tok.AccessToken
			c.exchanged = append(c.exchanged, tok.User.LoginCount)
			return nil
		case resp.StatusCode == http.StatusConflict && attempt > 0:
			c.exchangesLost++
			return nil // our first attempt went through; its answer was lost
		case resp.StatusCode == http.StatusServiceUnavailable:
			pause(ctx, 50*time.Millisecond)
		default:
			return fmt.Errorf("exchange %s: %d", sc.SceneID, resp.StatusCode)
		}
	}
}

// check compares what the client saw with what the service reports.
func (c *loginClient) check(t *testing.T) {
	t.Helper()
	replies := slices.Clone(c.replies)
	slices.Sort(replies)
	for i, n := range replies {
		if n != int64(i+1) {
			t.Errorf("%s: the replies numbered its logins %v; want 1…%d once each", c.openID, c.replies, c.confirmed)
			break
		}
	}
	if len(replies) != c.confirmed {
		t.Errorf("%s: %d replies for %d confirmed scenes", c.openID, len(replies), c.confirmed)
	}
	for _, n := range c.exchanged {
		if !slices.Contains(c.replies, n) {
			t.Errorf("%s: an exchange reported login %d, which no reply announced", c.openID, n)
		}
	}
	if c.token == "" {
		return
	}
	var u userBody
	resp := apiCall(t, http.MethodGet, c.base+"/api/v1/me", c.token, nil, &u)
	if resp.StatusCode != http.StatusOK || u.LoginCount != int64(c.confirmed) {
		t.Errorf("%s: /me answered %d with login_count %d; the client saw %d confirmed",
			c.openID, resp.StatusCode, u.LoginCount, c.confirmed)
	}
}
