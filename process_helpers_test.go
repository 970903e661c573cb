package main

// Shared helpers for the end-to-end tests that need a real process: the
// wxlogin binary built once and run as a child (signalled, killed, restarted
// on the same database), and a Redis server of the test's own.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the test's own on a free port, with an
// append-only file in a temporary directory so its data survives a restart.
type redisServer struct {
	port string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (%v); the outage test runs a Redis of its own: apt-get install -y redis-server", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	r := &redisServer{port: port, dir: t.TempDir()}
	r.start(t)
	t.Cleanup(func() {
		if r.cmd != nil {
			r.stop(t)
		}
	})
	return r
}

func (r *redisServer) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(r.done) }()
	opt, _ := redis.ParseURL(r.url())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	waitFor(t, 10*time.Second, "redis-server on port "+r.port+" answers", func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	})
}

// stop ends the server (SIGTERM: it finishes its append-only file) and waits.
func (r *redisServer) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// crashToken is the callback token the child runs with: the test plays
// WeChat and signs its callbacks with it.
const crashToken = "crash-test-callback-token"

// buildWxlogin builds the binary as an operator would (static, no cgo).
func buildWxlogin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wxlogin")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeLoopbackAddr finds a port for the child. The same address is used for
// every restart, as behind a real balancer: clients reconnect to it.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// childService runs the binary, one process at a time, on one database.
type childService struct {
	t    *testing.T
	bin  string
	addr string
	db   string
	env  []string
	URL  string

	mu   sync.Mutex
	proc *childProc
	logs *tailLog
	// replays counts starts that replayed the bbolt journal: what a crash
	// left only in the journal.
	replays atomic.Int32
}

type childProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

func newChildService(t *testing.T, bin string, env map[string]string) *childService {
	addr := freeLoopbackAddr(t)
	cs := &childService{
		t: t, bin: bin, addr: addr,
		db:   filepath.Join(t.TempDir(), "wxlogin.db"),
		URL:  "http://" + addr,
		logs: &tailLog{max: 400},
	}
	full := map[string]string{
		"WXLOGIN_ADDR":               addr,
		"WXLOGIN_DB":                 cs.db,
		"WECHAT_TOKEN":               crashToken,
		"WXLOGIN_SCENE_RATE":         "0", // every client comes from 127.0.0.1
		"WXLOGIN_MAX_STREAMS_PER_IP": "0",
		"WXLOGIN_LOG_FORMAT":         "json",
		"WXLOGIN_SHUTDOWN_GRACE":     "5s",
		"GOTRACEBACK":                "all", // the SIGQUIT dump on failure shows every goroutine
	}
	for k, v := range env {
		full[k] = v
	}
	for k, v := range full {
		cs.env = append(cs.env, k+"="+v)
	}
	t.Cleanup(func() {
		cs.mu.Lock()
		p := cs.proc
		cs.mu.Unlock()
		if p != nil && t.Failed() {
			// A failed test may be a hang in the service: SIGQUIT makes the
			// Go runtime print every goroutine's stack on stderr and exit.
			cs.logs.mu.Lock()
			cs.logs.max = 5000
			cs.logs.mu.Unlock()
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
			}
		}
		if p != nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("last lines of the service's output:\n%s", cs.logs.String())
		}
	})
	return cs
}

// start runs a new process and waits until it listens.
func (cs *childService) start() {
	cs.t.Helper()
	cmd := exec.Command(cs.bin)
	cmd.Env = cs.env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cs.t.Fatal(err)
	}
	cmd.Stderr = cs.logs
	if err := cmd.Start(); err != nil {
		cs.t.Fatalf("start wxlogin: %v", err)
	}
	p := &childProc{cmd: cmd, exited: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			cs.logs.add(line)
			if strings.Contains(line, "replayed the journal into bbolt") {
				cs.replays.Add(1)
			}
			if strings.HasPrefix(line, "wxlogin listening on ") {
				once.Do(func() { close(listening) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	cs.mu.Lock()
	cs.proc = p
	cs.mu.Unlock()
	select {
	case <-listening:
	case <-p.exited:
		cs.t.Fatalf("wxlogin exited at start: %v\n%s", p.err, cs.logs.String())
	case <-time.After(15 * time.Second):
		cs.t.Fatalf("wxlogin did not listen within 15 s\n%s", cs.logs.String())
	}
}

// stop sends sig and waits for the process to end; it returns the exit
// code (-1 when killed by a signal) and how long the exit took.
func (cs *childService) stop(sig os.Signal) (int, time.Duration) {
	cs.t.Helper()
	start := time.Now()
	cs.signal(sig)
	code := cs.wait()
	return code, time.Since(start)
}

// signal sends sig to the running process.
func (cs *childService) signal(sig os.Signal) {
	cs.t.Helper()
	cs.mu.Lock()
	p := cs.proc
	cs.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		cs.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the running process to exit and returns its exit code.
func (cs *childService) wait() int {
	cs.t.Helper()
	cs.mu.Lock()
	p := cs.proc
	cs.proc = nil
	cs.mu.Unlock()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		cs.t.Fatalf("wxlogin did not exit within 30 s")
	}
	return p.cmd.ProcessState.ExitCode()
}

// logsContain reports whether any output line so far contains s.
func (cs *childService) logsContain(s string) bool { return strings.Contains(cs.logs.String(), s) }

// tailLog keeps the last lines of a process's output.
type tailLog struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (l *tailLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > l.max {
		l.lines = l.lines[len(l.lines)-l.max:]
	}
}

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.part = append(l.part, p...)
	var done []string
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		done = append(done, string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	l.mu.Unlock()
	for _, line := range done {
		l.add(line)
	}
	return len(p), nil
}

func (l *tailLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
