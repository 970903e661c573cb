package events_test

// The Redis transport against the real Redis on 127.0.0.1:6379. Each test
// uses a prefix (and so a channel) of its own.

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/events"
	"wxlogin/internal/redistest"
	"wxlogin/login"
)

// testRedisAddr is redistest.URL's server, for the freezing proxy in front of it.
const testRedisAddr = "127.0.0.1:6379"

// newRedisClient connects to the test Redis under a connection name of its
// own (redistest fails the test, never skips it, when Redis does not answer).
func newRedisClient(t *testing.T, name string) *redis.Client {
	t.Helper()
	return redistest.Client(t, redistest.URL, func(o *redis.Options) {
		o.ClientName = name
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	})
}

func uniqueName(kind string) string { return "wxlogin-test-" + kind + "-" + redistest.Unique() }

// runningTransport is a transport whose Run is going, with what it delivered.
type runningTransport struct {
	*events.RedisTransport
	updates chan events.Update
	resyncs chan struct{}
	stop    func()
}

// startTransport runs tr until the test ends and waits for its first subscribe.
func startTransport(t *testing.T, tr *events.RedisTransport) *runningTransport {
	t.Helper()
	rt := &runningTransport{RedisTransport: tr, updates: make(chan events.Update, 64), resyncs: make(chan struct{}, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, func(u events.Update) { rt.updates <- u }, func() { rt.resyncs <- struct{}{} })
	}()
	var once sync.Once
	rt.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run still running 5 s after its context ended")
			}
		})
	}
	t.Cleanup(rt.stop)
	rt.waitResync(t, "first subscribe")
	return rt
}

func (rt *runningTransport) waitResync(t *testing.T, what string) {
	t.Helper()
	select {
	case <-rt.resyncs:
	case <-time.After(10 * time.Second):
		t.Fatalf("no resync after %s within 10 s", what)
	}
}

func (rt *runningTransport) next(t *testing.T) events.Update {
	t.Helper()
	select {
	case u := <-rt.updates:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update delivered within 5 s")
		return events.Update{}
	}
}

func (rt *runningTransport) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case u := <-rt.updates:
		t.Fatalf("unexpected update %+v", u)
	case <-time.After(wait):
	}
}

func TestRedisTransportReachesEveryInstance(t *testing.T) {
	prefix := uniqueName("prefix") + ":"
	a := startTransport(t, events.NewRedisTransport(newRedisClient(t, uniqueName("a")), prefix))
	b := startTransport(t, events.NewRedisTransport(newRedisClient(t, uniqueName("b")), prefix))
	other := startTransport(t, events.NewRedisTransport(newRedisClient(t, uniqueName("o")), uniqueName("other")+":"))

	sent := events.Update{SceneID: "scene-a", Version: 2, Status: login.StatusConfirmed, Data: []byte(`{"scene_id":"scene-a"}`)}
	if err := a.Publish(context.Background(), sent); err != nil {
		t.Fatal(err)
	}
	for name, rt := range map[string]*runningTransport{"publisher": a, "other instance": b} {
		got := rt.next(t)
		if got.SceneID != sent.SceneID || got.Version != sent.Version || got.Status != sent.Status || string(got.Data) != string(sent.Data) {
			t.Errorf("%s got %+v, want %+v", name, got, sent)
		}
	}
	other.none(t, 200*time.Millisecond) // another deployment's prefix hears nothing
}

// TestRedisTransportResubscribesAfterBlip: the subscriber's connection is
// killed; Run subscribes again, calls resync (so waiters re-read what they
// may have missed) and delivers again.
func TestRedisTransportResubscribesAfterBlip(t *testing.T) {
	prefix := uniqueName("prefix") + ":"
	name := uniqueName("blip")
	rdb := newRedisClient(t, name)
	rt := startTransport(t, events.NewRedisTransport(rdb, prefix))

	admin := newRedisClient(t, uniqueName("admin"))
	for round := 1; round <= 2; round++ {
		killed := killConnections(t, admin, name, "subscribe")
		if killed == 0 {
			t.Fatalf("round %d: found no subscriber connection named %s", round, name)
		}
		rt.waitResync(t, "the connection was killed")
		u := events.Update{SceneID: "scene-blip", Version: uint64(round), Status: login.StatusPending, Data: []byte(`{}`)}
		if err := rt.Publish(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		if got := rt.next(t); got.Version != uint64(round) {
			t.Fatalf("round %d: delivered %+v", round, got)
		}
	}
}

// TestRedisTransportSurvivesRedisDown: with nothing listening, Run keeps
// trying without spinning, Publish fails (the hub then delivers locally),
// and cancel ends Run.
func TestRedisTransportSurvivesRedisDown(t *testing.T) {
	tr := events.NewRedisTransport(redistest.DownClient(t), "wxlogin-test:down:")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var resyncs int
	go func() { done <- tr.Run(ctx, func(events.Update) {}, func() { resyncs++ }) }()
	if err := tr.Publish(context.Background(), events.Update{SceneID: "s"}); err == nil {
		t.Fatal("Publish with Redis down succeeded")
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end after cancel")
	}
	if resyncs != 0 {
		t.Fatalf("resync called %d times without a subscription", resyncs)
	}
}

// TestHubsShareChangesOverRedis: a long-poll waiting on one hub wakes when
// another hub (another instance) is notified of a change.
func TestHubsShareChangesOverRedis(t *testing.T) {
	prefix := uniqueName("prefix") + ":"
	hubA := events.NewHub(events.WithTransport(events.NewRedisTransport(newRedisClient(t, uniqueName("hub-a")), prefix)))
	defer hubA.Close()
	hubB := events.NewHub(events.WithTransport(events.NewRedisTransport(newRedisClient(t, uniqueName("hub-b")), prefix)))
	defer hubB.Close()
	admin := newRedisClient(t, uniqueName("admin"))
	waitSubscribers(t, admin, prefix+"events", 2)

	const scene = "scene-shared-00000000"
	changed, release := hubB.Changed(scene)
	defer release()
	hubA.Notify(context.Background(), login.View{SceneID: scene, Status: login.StatusConfirmed, Version: 2})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("a change notified on hub A did not wake a long-poll on hub B")
	}
}

// killConnections kills the named client's connections running cmd (e.g.
// "subscribe"), found through CLIENT LIST; it never touches anyone else's.
func killConnections(t *testing.T, admin *redis.Client, name, cmd string) int {
	t.Helper()
	ctx := context.Background()
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		f := clientFields(line)
		if f["name"] != name || !strings.Contains(f["cmd"], cmd) {
			continue
		}
		if err := admin.Do(ctx, "CLIENT", "KILL", "ID", f["id"]).Err(); err != nil {
			t.Fatalf("kill client %s: %v", f["id"], err)
		}
		killed++
	}
	return killed
}

func clientFields(line string) map[string]string {
	f := make(map[string]string)
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = v
		}
	}
	return f
}

// waitSubscribers waits until channel has n subscribers.
func waitSubscribers(t *testing.T, admin *redis.Client, channel string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m, err := admin.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[channel] >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("channel %s did not reach %d subscribers within 10 s", channel, n)
}

// TestRedisTransportFindsSilentDeadConnection: the path to Redis stops
// carrying bytes without a reset (a dead NAT entry, a frozen server). The
// idle ping goes unanswered, Run drops the connection, subscribes again on a
// fresh one and calls resync.
func TestRedisTransportFindsSilentDeadConnection(t *testing.T) {
	proxy := newFreezingProxy(t, testRedisAddr)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.addr(), DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	prefix := uniqueName("prefix") + ":"
	rt := startTransport(t, events.NewRedisTransport(rdb, prefix, events.WithIdleCheck(150*time.Millisecond)))

	proxy.freezeExisting() // connections made so far go silent; new ones work
	rt.waitResync(t, "the connection went silent")
	publisher := events.NewRedisTransport(newRedisClient(t, uniqueName("pub")), prefix)
	if err := publisher.Publish(context.Background(), events.Update{SceneID: "scene-silent", Version: 7}); err != nil {
		t.Fatal(err)
	}
	if got := rt.next(t); got.Version != 7 {
		t.Fatalf("delivered %+v", got)
	}
}

// freezingProxy forwards TCP to a target; freezeExisting makes every
// connection open so far stop forwarding in both directions, silently.
type freezingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxiedConn
	wg     sync.WaitGroup
}

type proxiedConn struct {
	frozen chan struct{}
	once   sync.Once
	client net.Conn
	server net.Conn
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezingProxy) addr() string { return p.ln.Addr().String() }

func (p *freezingProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxiedConn{frozen: make(chan struct{}), client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Go(func() { c.pipe(client, server) })
		p.wg.Go(func() { c.pipe(server, client) })
	}
}

// pipe copies until the connection closes; once frozen it reads and drops.
func (c *proxiedConn) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			to.Close()
			return
		}
		select {
		case <-c.frozen:
			continue // swallowed: no reset, no answer
		default:
		}
		if _, err := to.Write(buf[:n]); err != nil {
			from.Close()
			return
		}
	}
}

func (p *freezingProxy) freezeExisting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.once.Do(func() { close(c.frozen) })
	}
}
