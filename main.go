// Command wxlogin serves "scan with WeChat to log in": QR scenes, WeChat's
// webhook, SSE and polling for the waiting client, and login counts on disk.
// With no WECHAT_APPID it runs a self-contained demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"wxlogin/oidcprovider"
	"wxlogin/wechat"
)

func main() {
	// The one process global: the OIDC library logs only to slog's default
	// logger; LogRouter sends its records to the serving provider's logger.
	slog.SetDefault(slog.New(oidcprovider.LogRouter(slog.NewTextHandler(os.Stderr, nil))))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// silenceper sends every call to WeChat's API through one HTTP client
	// kept in a package variable: it cannot differ between the services of
	// one process, so the process chooses it here, once, before anything
	// runs. Tests choose theirs in TestMain.
	wechat.SetHTTPClient(weChatHTTPClient(os.Getenv))
	if err := dispatch(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wxlogin:", err)
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx ends, then shuts down
// gracefully. Tests call it directly with their own environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogFormat, stdout)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (WXLOGIN_ADDR): %w", cfg.Addr, err)
	}
	a, err := build(ctx, cfg, log, selfURL(ln.Addr()))
	if err != nil {
		ln.Close()
		return err
	}

	srv := &http.Server{
		Handler:           bodyDeadline(a.handler, cfg.BodyTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// No WriteTimeout: it would cut SSE streams. Each stream write has
		// its own deadline instead (events.WithWriteTimeout).
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	silent := newSilentConns()
	srv.ConnState = silent.track
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("wxlogin listening", "url", selfURL(ln.Addr()), "demo", cfg.Demo())
	fmt.Fprintf(stdout, "wxlogin listening on %s\n", selfURL(ln.Addr()))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		a.close()
		return fmt.Errorf("serve: %w", err)
	}
	return shutdown(cfg, log, srv, silent, a)
}

// shutdown stops accepting, ends every stream (clients reconnect elsewhere),
// lets in-flight requests such as callbacks finish, and closes the database.
func shutdown(cfg *config, log *slog.Logger, srv *http.Server, silent *silentConns, a *app) error {
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.hub.Drain(ctx); err != nil {
			log.Warn("streams did not end within the grace time", "err", err)
		}
	}()
	// Connections that never sent a request are not in flight: close them
	// instead of letting Shutdown wait 5 s for each.
	shutDown := make(chan struct{})
	wg.Go(func() { silent.closeSilentUntil(shutDown, 250*time.Millisecond, 100*time.Millisecond) })
	err := srv.Shutdown(ctx)
	close(shutDown)
	wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("requests still running at the end of the grace time; closing them")
		srv.Close()
		err = nil
	}
	if a.forwarder != nil {
		// Forwards after an answer (unsubscribes, new followers) are the
		// site's records: let them finish (each within its timeout).
		if ferr := a.forwarder.Wait(ctx); ferr != nil {
			log.Warn("forwards to the account's handler cut short by the grace time", "err", ferr)
		}
	}
	a.close()
	log.Info("stopped")
	return err
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// selfURL is how this process reaches itself (the demo's simulated WeChat).
func selfURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
