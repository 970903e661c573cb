package wechat_test

// WeChat misbehaving, against the local stand-in: slow answers, HTTP
// errors, errcodes with and without errmsg, rejected tokens; and storage
// stalling under the webhook. The service is the real one (bbolt, hub,
// handlers) over real HTTP; only WeChat's API servers are played.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"wxlogin/events"
	"wxlogin/handlers"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// apiTimeout mirrors wire.go's wechatTimeout: the HTTP client's timeout is
// the only bound on qrcode/create (silenceper passes it no context).
const apiTimeout = 4 * time.Second

// weChatSlowness is how slow the stand-in is told to be: WeChat's own limit
// for our answers, and longer than apiTimeout.
const weChatSlowness = 5 * time.Second

// misbehaving plays WeChat's API for every test of this package: silenceper's
// HTTP client is process-wide, so TestMain points it at this one WeChat,
// served over real HTTP.
var misbehaving = wechattest.New()

func TestMain(m *testing.M) {
	srv := httptest.NewServer(misbehaving)
	wechat.SetHTTPClient(wechat.RedirectClient(srv.URL, apiTimeout))
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

// misbehavingWeChat returns the test binary's WeChat, healed when t ends.
func misbehavingWeChat(t *testing.T) *wechattest.WeChat {
	t.Cleanup(func() { misbehaving.SetFault(wechattest.Fault{}) })
	return misbehaving
}

type misbehaveService struct {
	URL   string
	store *storage.Bolt
	disk  *diskGate
	svc   *login.Service
	sim   *wechat.Simulator
	calls *observed
}

// observed collects wechat.Client.Observe calls.
type observed struct {
	mu    sync.Mutex
	calls []string
}

func (o *observed) add(api, errcode string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, api+" "+errcode)
}

func (o *observed) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

const misbehaveToken = "misbehave-token"

func startMisbehaveService(t *testing.T, appID string) *misbehaveService {
	t.Helper()
	disk := newDiskGate()
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "wxlogin.db"), storage.WithJournalSync(disk.sync))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := events.NewHub(events.WithLogger(log))
	calls := &observed{}
	client := wechat.NewClient(wechat.Config{AppID: appID, AppSecret: "s", Token: misbehaveToken, Observe: calls.add}, log)
	svc := login.NewService(store, hub, client, login.WithLogger(log))
	cb := wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: misbehaveToken, Log: log})
	srv := httptest.NewServer(handlers.New(svc, hub, handlers.Config{Callback: cb, Log: log}))
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
		store.Close()
	})
	return &misbehaveService{
		URL: srv.URL, store: store, disk: disk, svc: svc, calls: calls,
		sim: &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: misbehaveToken},
	}
}

type createAnswer struct {
	status  int
	elapsed time.Duration
	body    handlers.ErrorBody
	sceneID string
}

func (s *misbehaveService) create(t *testing.T) createAnswer {
	t.Helper()
	start := time.Now()
	resp, err := http.Post(s.URL+"/api/v1/login/scenes", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := createAnswer{status: resp.StatusCode, elapsed: time.Since(start)}
	if resp.StatusCode == http.StatusCreated {
		var sc struct {
			SceneID string `json:"scene_id"`
		}
		_ = json.Unmarshal(raw, &sc)
		a.sceneID = sc.SceneID
		return a
	}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("error answer is not the JSON error shape: %q", raw)
	}
	return a
}

// TestSceneCreationWhenWeChatMisbehaves: every way WeChat's API fails
// becomes a 503 with a message that says what happened, within the HTTP
// client's timeout, and the service works again once WeChat does.
func TestSceneCreationWhenWeChatMisbehaves(t *testing.T) {
	standIn := misbehavingWeChat(t)
	s := startMisbehaveService(t, "wxmisbehave_create")
	for _, tc := range []struct {
		name     string
		fault    wechattest.Fault
		code     string
		message  string
		observed string // the qrcode/create errcode reported to Observe
	}{
		{"slow", wechattest.Fault{Delay: weChatSlowness}, login.EWECHAT, "WeChat is unavailable", wechat.NoAnswer},
		{"HTTP 500", wechattest.Fault{HTTPStatus: http.StatusInternalServerError}, login.EWECHAT, "WeChat is unavailable", wechat.NoAnswer},
		{"HTTP 502", wechattest.Fault{HTTPStatus: http.StatusBadGateway}, login.EWECHAT, "WeChat is unavailable", wechat.NoAnswer},
		{"errcode with errmsg", wechattest.Fault{QRErrCode: -1, QRErrMsg: "system error"}, login.EWECHAT, "errcode -1", "-1"},
		{"errcode with empty errmsg", wechattest.Fault{QRErrCode: 40013}, login.EWECHAT, "errcode 40013", "40013"},
		{"quota, empty errmsg", wechattest.Fault{QRErrCode: wechat.ErrCodeQuota}, login.EQUOTA, "45009", "45009"},
		{"quota", wechattest.Fault{QRErrCode: wechat.ErrCodeQuota, QRErrMsg: "reach max api daily quota limit"}, login.EQUOTA, "45009", "45009"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := s.create(t); a.status != http.StatusCreated {
				t.Fatalf("healthy WeChat: %d %+v", a.status, a.body)
			}
			s.calls.take()
			standIn.SetFault(tc.fault)
			a := s.create(t)
			if a.status != http.StatusServiceUnavailable || a.body.Error != tc.code || !strings.Contains(a.body.Message, tc.message) {
				t.Errorf("answer %d %+v, want 503 %s mentioning %q", a.status, a.body, tc.code, tc.message)
			}
			// A slow stand-in answers success after weChatSlowness: a 503
			// means the HTTP client's timeout, not WeChat, ended the wait.
			t.Logf("503 after %s: %s", a.elapsed.Round(time.Millisecond), a.body.Message)
			if got := s.calls.take(); len(got) != 1 || got[0] != "qrcode/create "+tc.observed {
				t.Errorf("observed %v, want [qrcode/create %s]", got, tc.observed)
			}
			standIn.SetFault(wechattest.Fault{})
			if a := s.create(t); a.status != http.StatusCreated {
				t.Errorf("after WeChat recovered: %d %+v", a.status, a.body)
			}
		})
	}
}

// TestTokenRefreshedOn40001: WeChat rejects the cached token (another
// process reset it, or it was revoked). The client drops it, fetches a new
// one and retries once; a token that keeps failing is not fetched in a loop.
func TestTokenRefreshedOn40001(t *testing.T) {
	standIn := misbehavingWeChat(t)
	s := startMisbehaveService(t, "wxmisbehave_token")
	if a := s.create(t); a.status != http.StatusCreated {
		t.Fatalf("first scene: %d %+v", a.status, a.body)
	}
	if got := s.calls.take(); strings.Join(got, ",") != "token 0,qrcode/create 0" {
		t.Fatalf("first scene's calls: %v", got)
	}

	standIn.SetFault(wechattest.Fault{RejectTokens: true}) // every token so far is now invalid
	tokens := standIn.TokenCalls.Load()
	if a := s.create(t); a.status != http.StatusCreated {
		t.Fatalf("after the token was invalidated: %d %+v", a.status, a.body)
	}
	if got := s.calls.take(); strings.Join(got, ",") != "qrcode/create 40001,token 0,qrcode/create 0" {
		t.Errorf("calls: %v, want a 40001, a new token and a successful retry", got)
	}
	if n := standIn.TokenCalls.Load() - tokens; n != 1 {
		t.Errorf("%d token fetches, want 1", n)
	}
	// The new token is cached: the next scene needs no fetch.
	if a := s.create(t); a.status != http.StatusCreated {
		t.Fatalf("next scene: %d", a.status)
	}
	if got := s.calls.take(); strings.Join(got, ",") != "qrcode/create 0" {
		t.Errorf("next scene's calls: %v", got)
	}

	// WeChat answers 40001 whatever the token: one refresh, one retry, a 503.
	standIn.SetFault(wechattest.Fault{QRErrCode: wechat.ErrCodeInvalidToken, QRErrMsg: "invalid credential"})
	tokens = standIn.TokenCalls.Load()
	a := s.create(t)
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body.Message, "40001") {
		t.Errorf("persistent 40001: %d %+v", a.status, a.body)
	}
	if n := standIn.TokenCalls.Load() - tokens; n != 1 {
		t.Errorf("%d token fetches for one scene, want 1", n)
	}
}

// TestSlowWeChatPilesNothingUp: many browsers ask for scenes while WeChat
// hangs. Each waits at most the client timeout, calls beyond the in-flight
// cap are refused at once, and when it is over no goroutine is left behind.
func TestSlowWeChatPilesNothingUp(t *testing.T) {
	standIn := misbehavingWeChat(t)
	s := startMisbehaveService(t, "wxmisbehave_pileup")
	if a := s.create(t); a.status != http.StatusCreated { // token cached
		t.Fatalf("first scene: %d", a.status)
	}
	settle()
	before := runtime.NumGoroutine()

	standIn.SetFault(wechattest.Fault{Delay: weChatSlowness})
	qrCalls := standIn.QRCalls.Load()
	const browsers = 100 // above the default cap of 64
	answers := make(chan createAnswer, browsers)
	var wg sync.WaitGroup
	for range browsers {
		wg.Go(func() { answers <- s.create(t) })
	}
	wg.Wait()
	close(answers)
	var refused, timedOut int
	var slowestRefused, slowestTimedOut time.Duration
	for a := range answers {
		switch {
		case a.status != http.StatusServiceUnavailable:
			t.Errorf("answer %d %+v, want 503", a.status, a.body)
		case strings.Contains(a.body.Message, "answering slowly"):
			refused++ // never sent to WeChat
			slowestRefused = max(slowestRefused, a.elapsed)
		default:
			// The stand-in would have answered success after
			// weChatSlowness: the client timeout ended these.
			timedOut++
			slowestTimedOut = max(slowestTimedOut, a.elapsed)
		}
	}
	reached := standIn.QRCalls.Load() - qrCalls
	t.Logf("%d browsers: %d timed out after the client timeout (slowest answer %s), %d refused at once (slowest %s); %d calls reached WeChat",
		browsers, timedOut, slowestTimedOut.Round(time.Millisecond), refused, slowestRefused.Round(time.Millisecond), reached)
	if timedOut > 64 || reached > 64 || refused == 0 {
		t.Errorf("the in-flight cap did not hold: %d timed out, %d refused, %d reached WeChat", timedOut, refused, reached)
	}

	standIn.SetFault(wechattest.Fault{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		settle()
		after := runtime.NumGoroutine()
		if after <= before+2 {
			t.Logf("goroutines: %d before, %d after", before, after)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle closes idle keep-alive connections (each holds two goroutines),
// so goroutine counts compare like with like.
func settle() {
	http.DefaultClient.CloseIdleConnections()
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// diskGate stalls the store's journal syncs on demand: a disk that stops
// answering, under the real store.
type diskGate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the disk answers
}

func newDiskGate() *diskGate {
	g := &diskGate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *diskGate) sync(f *os.File) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	<-open
	return f.Sync()
}

// stall holds every sync from now until release is called.
func (g *diskGate) stall() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
	return sync.OnceFunc(func() { close(g.open) })
}

// TestCallbackAnswersWhenStorageStalls: the disk stops answering (a stuck
// volume, a full queue) while a scan arrives, so its journal sync hangs. The webhook must answer WeChat within its 5 s, and must not say
// "success" for a scan it has not committed; WeChat's retry then gets the
// real reply, and the login is counted exactly once.
func TestCallbackAnswersWhenStorageStalls(t *testing.T) {
	misbehavingWeChat(t)
	s := startMisbehaveService(t, "wxmisbehave_storage")
	a := s.create(t)
	if a.status != http.StatusCreated {
		t.Fatalf("create: %d", a.status)
	}
	const openID = "oMisbehave_slow_storage_0001"
	ev := wechat.ScanEvent(a.sceneID, openID, false, time.Now())
	// WeChat waits 5 s for an answer, then hangs up and retries.
	weChat := &http.Client{Timeout: 5 * time.Second}
	s.sim.Client = weChat

	release := s.disk.stall()
	defer release()
	start := time.Now()
	r, err := s.sim.Send(context.Background(), ev)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("WeChat got no answer within 5 s: %v (after %s)", err, elapsed)
	}
	if r.Status == http.StatusOK || r.Body == "success" {
		t.Errorf("answered %d %q for a scan that cannot have been committed", r.Status, r.Body)
	}
	t.Logf("with storage stalled the webhook answered %d after %s", r.Status, elapsed)

	// The stall ends: the scan queued behind it commits on its own, and
	// WeChat's retry of the very same message gets the login reply.
	release()
	var reply wechat.Reply
	for attempt := range 3 { // WeChat retries three times
		reply, err = s.sim.Send(context.Background(), ev)
		if err == nil && reply.Status == http.StatusOK {
			break
		}
		t.Logf("retry %d: %+v %v", attempt+1, reply, err)
	}
	if reply.Status != http.StatusOK || !strings.Contains(reply.Text, "第 1 次") {
		t.Fatalf("WeChat's retry got %d %q, want the first-login reply", reply.Status, reply.Text)
	}
	again, err := s.sim.Send(context.Background(), ev)
	if err != nil || again.Text != reply.Text {
		t.Errorf("another retry got %q (%v), want the same reply", again.Text, err)
	}
	u, err := s.store.User(context.Background(), openID)
	if err != nil || u.LoginCount != 1 {
		t.Fatalf("login count %v (%v), want exactly 1", u, err)
	}
}

// TestFirstQRCallsAtOnce: a new instance's first scene creations arrive
// together. silenceper builds its QR API object lazily on first use without
// a lock (OfficialAccount.GetBasic); the client must not race there (-race).
func TestFirstQRCallsAtOnce(t *testing.T) {
	misbehavingWeChat(t)
	s := startMisbehaveService(t, "wxmisbehave_first")
	const n = 16
	start := make(chan struct{})
	answers := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			answers <- s.create(t).status
		})
	}
	close(start)
	wg.Wait()
	close(answers)
	for status := range answers {
		if status != http.StatusCreated {
			t.Errorf("scene creation answered %d", status)
		}
	}
}
