package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // only served with WXLOGIN_LOAD_PPROF
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/r3labs/sse/v2"
)

// The baselines run in a child process of this tool (-serve=…), so their
// memory is read from /proc exactly like the wxlogin server's, and each side
// has its own 20 000 open files.

// serveBaseline runs one bare-library server until SIGTERM/SIGINT.
func serveBaseline(kind string, tuned bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var h http.Handler
	switch kind {
	case "sse-baseline":
		h = sseBaselineHandler(tuned)
	case "echo-baseline":
		h = echoBaselineHandler()
	default:
		return fmt.Errorf("-serve=%q: want sse-baseline or echo-baseline", kind)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The same server settings as wxlogin's main.go.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
		srv.Close()
	}()
	if a := os.Getenv("WXLOGIN_LOAD_PPROF"); a != "" {
		// Profiling the baseline (net/http/pprof on its own port), to
		// compare stacks and heap with a profiled wxlogin.
		go func() { _ = http.ListenAndServe(a, nil) }()
	}
	fmt.Printf("%s listening on http://%s\n", kind, ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sseBaselineHandler is what a user of r3labs/sse writes first: sse.New()
// with the library's defaults (BufferSize 1024, AutoReplay on, AutoStream
// off), a stream created on first subscribe, and Publish from an HTTP call.
// With tuned, the stream settings equal wxlogin's hub (BufferSize 8, no replay).
func sseBaselineHandler(tuned bool) http.Handler {
	srv := sse.New()
	if tuned {
		srv.BufferSize = 8
		srv.AutoReplay = false
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("stream")
		if id != "" && !srv.StreamExists(id) {
			srv.CreateStream(id)
		}
		srv.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("stream")
		if !srv.StreamExists(id) {
			http.Error(w, "no such stream", http.StatusNotFound)
			return
		}
		srv.Publish(id, &sse.Event{
			ID:    []byte(r.URL.Query().Get("id")),
			Event: []byte("confirmed"),
			Data:  []byte(r.URL.Query().Get("data")),
		})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /debug/goroutines", goroutineCount)
	return mux
}

// constView has the shape of a poll answer.
type constView struct {
	SceneID   string    `json:"scene_id"`
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
	Interval  int       `json:"interval"`
}

// echoBaselineHandler is a bare Echo handler returning a constant JSON.
func echoBaselineHandler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	v := constView{SceneID: "AAAAAAAAAAAAAAAAAAAAAA", Status: "pending",
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Interval: 2}
	e.GET("/const", func(c echo.Context) error { return c.JSON(http.StatusOK, v) })
	e.GET("/debug/goroutines", echo.WrapHandler(http.HandlerFunc(goroutineCount)))
	return e
}

func goroutineCount(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(strconv.Itoa(runtime.NumGoroutine())))
}
