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
	"sync/atomic"
	"syscall"
	"time"
)

// server is the process under test: a child this tool started (its memory
// and threads are read from /proc) or a URL given with -url.
type server struct {
	URL  string // http://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	// Log lines at WARN or ERROR level, counted from the child's output.
	warnings atomic.Int64
	lastWarn atomic.Value
}

var listeningLine = regexp.MustCompile(`listening on (http://[0-9.:\[\]]+)`)

// spawn starts a child that prints "… listening on http://ADDR" on stdout
// and waits for that line.
func spawn(ctx context.Context, name string, args, env []string, logPath string) (*server, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tool
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) &&
				!strings.Contains(line, "DEMO MODE") {
				s.warnings.Add(1)
				s.lastWarn.Store(line)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case u := <-found:
		s.URL = u
		s.Addr = strings.TrimPrefix(u, "http://")
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before listening; see %s", name, logPath)
	case <-time.After(60 * time.Second):
		s.kill()
		return nil, fmt.Errorf("%s did not print its listening line within 60 s; see %s", name, logPath)
	case <-ctx.Done():
		s.kill()
		return nil, ctx.Err()
	}
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
