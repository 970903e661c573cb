package main

// Several instances on one Redis behave as one service: a callback handled by
// one instance reaches a stream on another and a long-poll on a third, a code
// is exchanged once wherever it is presented, counts are exact under WeChat's
// retries landing on different instances, and a Redis outage gives 503s and
// heals by itself. The instances run in this process through run, in demo
// mode (the WeChat stand-in is process-wide), sharing WECHAT_TOKEN so every
// instance accepts the same signed callbacks.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"wxlogin/wechat"
)

// TestClusterOneLoginAcrossInstances: scene on A, stream on B, long-poll on
// C, WeChat's callback to A (and its retry to B); the code works once.
func TestClusterOneLoginAcrossInstances(t *testing.T) {
	prefix := newClusterPrefix(t, clusterRedis)
	nodes := startCluster(t, 3, clusterRedis, prefix, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]

	sc := createScene(t, a.URL)
	stream, resp := openStream(t, b.URL, sc.SceneID, sc.Secret, "")
	if stream == nil {
		t.Fatalf("stream on B: status %d", resp.StatusCode)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("B's first event = %+v, want pending", ev)
	}

	type pollResult struct {
		status int
		view   statusView
	}
	polled := make(chan pollResult, 1)
	go func() {
		var v statusView
		r := apiCall(t, http.MethodGet, c.URL+"/api/v1/login/scenes/"+sc.SceneID+"?wait=25", sc.Secret, nil, &v)
		polled <- pollResult{r.StatusCode, v}
	}()
	waitFor(t, 5*time.Second, "C holds the long-poll", func() bool {
		return metricValue(t, c.URL, "wxlogin_long_polls_in_flight") == 1
	})

	const openID = "o-cluster-one-login-000000000"
	scan := wechat.ScanEvent(sc.SceneID, openID, false, time.Now())
	first, err := wechatAt(a).Send(context.Background(), scan)
	if err != nil || first.Status != http.StatusOK {
		t.Fatalf("callback to A: %+v, %v", first, err)
	}
	if n := replyCount(t, first.Text); n != 1 {
		t.Fatalf("first login counted as %d", n)
	}

	ev := stream.Next(t, 5*time.Second)
	pushed := decodeView(t, ev.Data)
	if ev.Event != "confirmed" || pushed.Status != "confirmed" || pushed.Code == "" {
		t.Fatalf("B's stream got %+v, want confirmed with a code", ev)
	}
	stream.WaitClosed(t, 5*time.Second) // terminal status ends the stream
	var pr pollResult
	select {
	case pr = <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("C's long-poll did not answer within 5 s of the confirmation on A")
	}
	if pr.status != http.StatusOK || pr.view.Status != "confirmed" || pr.view.Code != pushed.Code {
		t.Fatalf("C's long-poll = %d %+v, want confirmed with B's code", pr.status, pr.view)
	}

	// WeChat retries the same message on another instance: same reply, no second count.
	retry, err := wechatAt(b).Send(context.Background(), scan)
	if err != nil || retry.Text != first.Text {
		t.Fatalf("retry on B = %+v, %v; want the first reply %q", retry, err, first.Text)
	}

	r1, body := exchange(t, b.URL, sc.SceneID, sc.Secret, pushed.Code)
	if r1.StatusCode != http.StatusOK {
		t.Fatalf("exchange on B: %d %v", r1.StatusCode, body)
	}
	for _, other := range []*testServer{c, a} {
		r2, body2 := exchange(t, other.URL, sc.SceneID, sc.Secret, pushed.Code)
		if r2.StatusCode != http.StatusConflict || body2["error"] != "conflict" {
			t.Fatalf("second use of the code on %s: %d %v, want 409 conflict", other.URL, r2.StatusCode, body2)
		}
	}
	token, _ := body["access_token"].(string)
	for _, n := range nodes { // every instance knows the session and the exact count
		var me struct {
			LoginCount int `json:"login_count"`
		}
		if r := apiCall(t, http.MethodGet, n.URL+"/api/v1/me", token, nil, &me); r.StatusCode != http.StatusOK || me.LoginCount != 1 {
			t.Fatalf("/me on %s: %d, count %d; want 200 and 1", n.URL, r.StatusCode, me.LoginCount)
		}
	}
}

// TestClusterManyLoginsWithRetries: 200 scenes created across 3 instances,
// each streamed from another instance; every callback goes to a third and is
// also retried by "WeChat" at a fourth moment on the creating instance, all
// at once. Every stream sees its confirmation, each user's counts are 1..k
// exactly once, and the counts add up to the number of logins.
func TestClusterManyLoginsWithRetries(t *testing.T) {
	const (
		scenes = 200
		users  = 50 // each logs in scenes/users times
	)
	prefix := newClusterPrefix(t, clusterRedis)
	nodes := startCluster(t, 3, clusterRedis, prefix, nil)

	type attempt struct {
		scene  sceneInfo
		stream *sseStream
		openID string
	}
	logins := make([]attempt, scenes)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range logins {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sc := createScene(t, nodes[i%3].URL)
			stream, resp := openStream(t, nodes[(i+1)%3].URL, sc.SceneID, sc.Secret, "")
			if stream == nil {
				t.Errorf("scene %d: stream status %d", i, resp.StatusCode)
				return
			}
			if ev := stream.Next(t, 10*time.Second); ev.Event != "pending" {
				t.Errorf("scene %d: first event %+v", i, ev)
			}
			logins[i] = attempt{scene: sc, stream: stream, openID: fmt.Sprintf("o-cluster-user-%03d-000000000", i%users)}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// All callbacks at once: the original to one instance, WeChat's retry
	// of the very same message (same CreateTime) to another.
	var mu sync.Mutex
	counts := make(map[string][]int) // openid → the counts its replies carried
	start := time.Now()
	for i, l := range logins {
		scan := wechat.ScanEvent(l.scene.SceneID, l.openID, i%2 == 0, time.Now())
		for _, n := range []*testServer{nodes[(i+2)%3], nodes[i%3]} {
			wg.Go(func() {
				r, err := wechatAt(n).Send(context.Background(), scan)
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("scene %d: callback to %s: %+v, %v", i, n.URL, r, err)
					return
				}
				if r.Text == "" { // overlapped its twin: WeChat keeps the other answer
					return
				}
				m := countInReply.FindStringSubmatch(r.Text)
				if m == nil {
					t.Errorf("scene %d: reply %q carries no count", i, r.Text)
					return
				}
				n, _ := strconv.Atoi(m[1])
				mu.Lock()
				counts[l.openID] = append(counts[l.openID], n)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	callbacks := time.Since(start)

	for i, l := range logins {
		ev := l.stream.Next(t, 10*time.Second)
		if v := decodeView(t, ev.Data); ev.Event != "confirmed" || v.Code == "" {
			t.Fatalf("scene %d: stream on another instance got %+v, want confirmed with a code", i, ev)
		}
	}
	t.Logf("%d scenes, %d callbacks over 3 instances in %s", scenes, 2*scenes, callbacks.Round(time.Millisecond))

	// Each user's distinct reply counts are exactly 1..k, and the final counts add up.
	total := 0
	for u := range users {
		openID := fmt.Sprintf("o-cluster-user-%03d-000000000", u)
		seen := make(map[int]bool)
		for _, n := range counts[openID] {
			seen[n] = true
		}
		k := scenes / users
		for n := 1; n <= k; n++ {
			if !seen[n] {
				t.Errorf("%s: no reply said login %d (replies: %v)", openID, n, counts[openID])
			}
		}
		if len(seen) != k {
			t.Errorf("%s: replies carried counts %v, want exactly 1..%d", openID, counts[openID], k)
		}
	}
	// The stored counts, read through sessions on every instance.
	final := make(map[string]int)
	for i, l := range logins {
		v := pollScene(t, nodes[(i+2)%3].URL, l.scene)
		_, body := exchange(t, nodes[i%3].URL, l.scene.SceneID, l.scene.Secret, v.Code)
		user, _ := body["user"].(map[string]any)
		if user == nil {
			t.Fatalf("scene %d: exchange answered %v", i, body)
		}
		n := int(user["login_count"].(float64))
		final[l.openID] = max(final[l.openID], n)
	}
	for _, n := range final {
		total += n
	}
	if len(final) != users || total != scenes {
		t.Fatalf("%d users with counts summing to %d, want %d users and %d logins", len(final), total, users, scenes)
	}
}

// TestClusterRedisOutage: a Redis of the test's own (persisting to its
// directory) is stopped under two instances and started again. Meanwhile
// /readyz and requests answer 503 with the JSON error and WeChat's callback
// is not acknowledged; afterwards both instances recover without a restart,
// streams on one instance hear changes made on the other again, and nothing
// was lost or counted twice.
func TestClusterRedisOutage(t *testing.T) {
	rs := startRedisServer(t)
	prefix := newClusterPrefix(t, rs.url())
	nodes := startCluster(t, 2, rs.url(), prefix, nil)
	a, b := nodes[0], nodes[1]
	const openID = "o-cluster-outage-0000000000"
	ctx := context.Background()

	// Before: one login (count 1) and a scene waiting, streamed on B.
	first := createScene(t, a.URL)
	r, err := wechatAt(a).Send(ctx, wechat.ScanEvent(first.SceneID, openID, false, time.Now()))
	if err != nil || replyCount(t, r.Text) != 1 {
		t.Fatalf("first login: %+v, %v", r, err)
	}
	waiting := createScene(t, a.URL)
	stream, resp := openStream(t, b.URL, waiting.SceneID, waiting.Secret, "")
	if stream == nil {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("first event %+v", ev)
	}

	rs.stop(t)

	for _, n := range nodes {
		var body map[string]string
		if r := apiCall(t, http.MethodGet, n.URL+"/readyz", "", nil, &body); r.StatusCode != http.StatusServiceUnavailable || body["error"] != "unavailable" {
			t.Fatalf("/readyz on %s with Redis down: %d %v, want 503 unavailable", n.URL, r.StatusCode, body)
		}
	}
	for name, call := range map[string]func() *http.Response{
		"create": func() *http.Response {
			return apiCall(t, http.MethodPost, a.URL+"/api/v1/login/scenes", "", nil, nil)
		},
		"poll": func() *http.Response {
			return apiCall(t, http.MethodGet, b.URL+"/api/v1/login/scenes/"+waiting.SceneID, waiting.Secret, nil, nil)
		},
	} {
		r := call()
		var body map[string]string
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); r.StatusCode != http.StatusServiceUnavailable || err != nil || body["error"] != "unavailable" || body["message"] == "" {
			t.Fatalf("%s with Redis down: %d %s, want 503 with the JSON error", name, r.StatusCode, raw)
		}
	}
	scan := wechat.ScanEvent(waiting.SceneID, openID, false, time.Now())
	if r, err := wechatAt(a).Send(ctx, scan); err != nil || r.Status == http.StatusOK {
		t.Fatalf("callback with Redis down answered %+v, %v; it must not be acknowledged", r, err)
	}

	rs.start(t)
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.URL+" ready again", func() bool {
			return apiCall(t, http.MethodGet, n.URL+"/readyz", "", nil, nil).StatusCode == http.StatusOK
		})
	}
	// B's subscription is back: wait until both instances listen again, so
	// the next change is pushed, not only found on a re-read.
	waitNumSub(t, rs.url(), prefix+"events", 2)

	// WeChat retries the unacknowledged message: it counts now, once.
	r, err = wechatAt(b).Send(ctx, scan)
	if err != nil || r.Status != http.StatusOK || replyCount(t, r.Text) != 2 {
		t.Fatalf("retried callback after recovery: %+v, %v; want login 2", r, err)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("stream opened before the outage got %+v, want confirmed", ev)
	}
	// A new scene on B, streamed on A, confirmed through B.
	third := createScene(t, b.URL)
	s3, _ := openStream(t, a.URL, third.SceneID, third.Secret, "")
	if s3 == nil || s3.Next(t, 5*time.Second).Event != "pending" {
		t.Fatal("stream after recovery did not start")
	}
	r, err = wechatAt(b).Send(ctx, wechat.ScanEvent(third.SceneID, openID, false, time.Now()))
	if err != nil || replyCount(t, r.Text) != 3 {
		t.Fatalf("third login: %+v, %v", r, err)
	}
	if ev := s3.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("stream on A after recovery got %+v", ev)
	}
	// The first login's scene is intact: its code still exchanges, and the count is 3.
	v := pollScene(t, b.URL, first)
	resp2, body := exchange(t, b.URL, first.SceneID, first.Secret, v.Code)
	if resp2.StatusCode != http.StatusOK {
		t.Fatalf("exchange of the pre-outage code: %d %v", resp2.StatusCode, body)
	}
	if n := body["user"].(map[string]any)["login_count"].(float64); n != 3 {
		t.Fatalf("count after the outage = %v, want 3", n)
	}
}

// waitNumSub waits until channel has n subscribers.
func waitNumSub(t *testing.T, redisURL, channel string, n int64) {
	t.Helper()
	opt, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	waitFor(t, 15*time.Second, fmt.Sprintf("%d subscribers on %s", n, channel), func() bool {
		m, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && m[channel] >= n
	})
}

// TestClusterRedisStall: Redis stops answering without closing connections
// (CLIENT PAUSE on the test's own server) while WeChat's callback is being
// handled. The callback is not acknowledged with a login it did not commit,
// /readyz says 503, and once Redis answers again WeChat's retry on another
// instance settles the login exactly once.
func TestClusterRedisStall(t *testing.T) {
	rs := startRedisServer(t)
	prefix := newClusterPrefix(t, rs.url())
	nodes := startCluster(t, 2, rs.url(), prefix, nil)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	sc := createScene(t, a.URL)

	opt, _ := redis.ParseURL(rs.url())
	admin := redis.NewClient(opt)
	defer admin.Close()
	const pause = 4 * time.Second // longer than the 2 s Redis timeouts
	if err := admin.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan int, 1)
	go func() { ready <- apiCall(t, http.MethodGet, b.URL+"/readyz", "", nil, nil).StatusCode }()

	scan := wechat.ScanEvent(sc.SceneID, "o-cluster-stall-00000000000", false, time.Now())
	r, err := wechatAt(a).Send(ctx, scan)
	if err == nil && r.Status == http.StatusOK && r.Text != "" && replyCount(t, r.Text) != 1 {
		t.Fatalf("callback during the stall answered %+v", r)
	}
	t.Logf("callback during the stall: status %d, reply %q, err %v", r.Status, r.Text, err)
	if code := <-ready; code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while Redis stalls: %d, want 503", code)
	}

	waitFor(t, 15*time.Second, "ready after the pause", func() bool {
		return apiCall(t, http.MethodGet, b.URL+"/readyz", "", nil, nil).StatusCode == http.StatusOK
	})
	retry, err := wechatAt(b).Send(ctx, scan)
	if err != nil || retry.Status != http.StatusOK || replyCount(t, retry.Text) != 1 {
		t.Fatalf("WeChat's retry after the stall: %+v, %v; want login 1", retry, err)
	}
	v := pollScene(t, a.URL, sc)
	_, body := exchange(t, a.URL, sc.SceneID, sc.Secret, v.Code)
	if u, _ := body["user"].(map[string]any); u == nil || u["login_count"].(float64) != 1 {
		t.Fatalf("exchange after the stall: %v, want login_count 1", body)
	}
}
