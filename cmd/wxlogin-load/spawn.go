package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is the process under test: a child this tool started (its memory
// and threads are read from /proc) or a URL given with -url.
type server struct {
	URL     string // http://127.0.0.1:PORT
	Addr    string // 127.0.0.1:PORT
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

var listeningLine = regexp.MustCompile(`listening on (http://[0-9.:\[\]]+)`)

// spawn starts a child that prints "… listening on http://ADDR" on stdout
// and waits for that line. The child writes straight to its log file: a
// pipe read by this tool would let a busy tool slow the server's logging
// (and its request log holds a lock while it writes).
func spawn(ctx context.Context, name string, args, env []string, logPath string) (*server, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tool
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if m := listeningLine.FindSubmatch(b); m != nil {
			s.URL = string(m[1])
			s.Addr = strings.TrimPrefix(s.URL, "http://")
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before listening; see %s", name, logPath)
		case <-ctx.Done():
			s.kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("%s did not print its listening line within 60 s; see %s", name, logPath)
		}
	}
}

// warnings counts the server's log lines at WARN or ERROR level, except
// demo mode's own announcement.
func (s *server) warnings() int64 {
	if s.logPath == "" {
		return 0
	}
	f, err := os.Open(s.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) &&
			!strings.Contains(line, "DEMO MODE") {
			n++
		}
	}
	return n
}

// remote is a server given by URL: no /proc figures.
func remote(rawURL string) *server {
	u := strings.TrimRight(rawURL, "/")
	return &server{URL: u, Addr: strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")}
}

func (s *server) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// stop asks the child to shut down (SIGTERM) and waits up to grace.
func (s *server) stop(grace time.Duration) error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if st := s.cmd.ProcessState; st != nil && !st.Success() {
			return fmt.Errorf("server exited with %s", st)
		}
		return nil
	case <-time.After(grace):
		s.kill()
		return fmt.Errorf("server did not stop within %s after SIGTERM", grace)
	}
}

// kill ends the child at once (SIGKILL), as a crash would.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// procStats is what /proc says about the child.
type procStats struct {
	RSSKB     int64 // VmRSS: anonymous + file-backed (bbolt's mmap) + shmem
	AnonKB    int64 // RssAnon: the Go heap and stacks
	Threads   int
	FDs       int
	Goroutine int // from the server's own report, -1 when unknown
}

// stats reads /proc/<pid>/status and the goroutine count the server reports
// (go_goroutines in /metrics, or the baselines' /debug/goroutines).
func (s *server) stats(hc *http.Client) procStats {
	st := procStats{Goroutine: -1}
	if pid := s.pid(); pid > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					continue
				}
				f := strings.Fields(v)
				if len(f) == 0 {
					continue
				}
				n, _ := strconv.ParseInt(f[0], 10, 64)
				switch k {
				case "VmRSS":
					st.RSSKB = n
				case "RssAnon":
					st.AnonKB = n
				case "Threads":
					st.Threads = int(n)
				}
			}
		}
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			st.FDs = len(ents)
		}
	}
	st.Goroutine = s.goroutines(hc)
	return st
}

var goGoroutines = regexp.MustCompile(`(?m)^go_goroutines(?:\{[^}]*\})? ([0-9.e+]+)$`)

func (s *server) goroutines(hc *http.Client) int {
	for _, path := range []string{"/debug/goroutines", "/metrics"} {
		resp, err := hc.Get(s.URL + path)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if path == "/debug/goroutines" {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return n
			}
			continue
		}
		if m := goGoroutines.FindSubmatch(b); m != nil {
			f, err := strconv.ParseFloat(string(m[1]), 64)
			if err == nil {
				return int(f)
			}
		}
	}
	return -1
}

// settle waits until the server's RSS stops growing (GC and the scheduler
// catch up after a burst), at most max.
func (s *server) settle(hc *http.Client, max time.Duration) procStats {
	deadline := time.Now().Add(max)
	prev := s.stats(hc)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		cur := s.stats(hc)
		if s.pid() == 0 || abs(cur.RSSKB-prev.RSSKB) < max64(prev.RSSKB/200, 256) {
			return cur
		}
		prev = cur
	}
	return prev
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

var errServerGone = errors.New("server process exited")

func (s *server) alive() error {
	if s.done == nil {
		return nil
	}
	select {
	case <-s.done:
		return errServerGone
	default:
		return nil
	}
}
