package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"wxlogin/events"
	"wxlogin/handlers"
	"wxlogin/login"
)

// diskFull makes checkpoints fail as a full disk under bbolt would, while
// full is set.
func diskFull(full *atomic.Bool) BoltOption {
	return func(c *boltConfig) {
		c.checkpointFault = func() error {
			if full.Load() {
				return errors.New("write wx.db: no space left on device (injected)")
			}
			return nil
		}
		c.log = slog.New(slog.DiscardHandler)
	}
}

// While checkpoints fail, writes pile up in the overlay until its limit;
// past it writes are refused as unavailable and change nothing, Ping says
// why, reads go on; once a checkpoint works, writes are accepted again and
// nothing acknowledged is lost.
func TestOverlayLimitRefusesWritesWhileCheckpointsFail(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "wx.db")
	var full atomic.Bool
	const limit = 4 << 10
	b := openTestBolt(t, path, never, WithOverlayLimit(limit), diskFull(&full))

	full.Store(true)
	accepted := 0
	for ; accepted < 1000; accepted++ {
		err := count(ctx, b, fmt.Sprintf("user%d", accepted))
		if err != nil {
			if login.ErrorCode(err) != login.EUNAVAILABLE {
				t.Fatalf("write past the overlay limit: %v, want unavailable", err)
			}
			break
		}
		if accepted == 0 {
			if err := b.Checkpoint(ctx); err == nil {
				t.Fatal("checkpoint on a full disk: nil")
			}
		}
	}
	if accepted == 1000 {
		t.Fatal("1000 writes accepted while checkpoints fail: the overlay has no limit")
	}
	if size := b.overlay.size(); size <= limit || size > limit+1024 {
		t.Fatalf("refused with %d bytes in the overlay, want just past %d", size, limit)
	}
	err := b.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "writes refused") || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Ping with the overlay full: %v, want it to name the refusal and its cause", err)
	}
	wantCount(t, b, "user0", 1)                                                    // reads go on
	wantCount(t, b, fmt.Sprintf("user%d", accepted), 0)                            // the refused write changed nothing
	if err := count(ctx, b, "user0"); login.ErrorCode(err) != login.EUNAVAILABLE { // so does every write
		t.Fatalf("second write past the limit: %v, want unavailable", err)
	}

	full.Store(false)
	drainOverlay(t, b)
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping after a checkpoint worked: %v", err)
	}
	if err := count(ctx, b, "user0"); err != nil {
		t.Fatalf("write after a checkpoint worked: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got := rawCounts(t, path)
	for i := range accepted {
		want := int64(1)
		if i == 0 {
			want = 2
		}
		if got[fmt.Sprintf("user%d", i)] != want {
			t.Fatalf("bbolt after Close: %v, want %d users with one login (user0 two)", got, accepted)
		}
	}
	if len(got) != accepted {
		t.Fatalf("bbolt after Close: %d users, want %d", len(got), accepted)
	}
}

// drainOverlay checkpoints the generation a failed checkpoint left, then
// the writes since, and checks that the overlay is empty (its size
// accounting back to zero).
func drainOverlay(t *testing.T, b *Bolt) {
	t.Helper()
	if err := b.checkpointAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := b.overlay.size(); n != 0 {
		t.Fatalf("%d bytes left in the overlay after checkpoints that worked", n)
	}
}

// A zero or negative limit is a mistake, not "no limit".
func TestOverlayLimitMustBePositive(t *testing.T) {
	if b, err := OpenBolt(filepath.Join(t.TempDir(), "wx.db"), WithOverlayLimit(0)); err == nil {
		b.Close()
		t.Fatal("OpenBolt with an overlay limit of 0: nil error")
	}
}

// fixedQR stands in for WeChat's QR code API.
type fixedQR struct{}

func (fixedQR) IssueQR(_ context.Context, sceneID string, _ time.Duration) (login.QR, error) {
	return login.QR{URL: "http://weixin.qq.com/q/" + sceneID, Ticket: "ticket-" + sceneID}, nil
}

// Over HTTP: with the overlay full, creating a login answers 503 with the
// JSON error shape, and /readyz answers 503 naming the reason; both recover
// once a checkpoint works.
func TestOverlayLimitHTTP(t *testing.T) {
	var full atomic.Bool
	b := openTestBolt(t, filepath.Join(t.TempDir(), "wx.db"), never, WithOverlayLimit(4<<10), diskFull(&full))
	defer b.Close()
	log := slog.New(slog.DiscardHandler)
	hub := events.NewHub(events.WithLogger(log))
	defer hub.Close()
	svc := login.NewService(b, hub, fixedQR{}, login.WithLogger(log))
	srv := httptest.NewServer(handlers.New(svc, hub, handlers.Config{Ready: b.Ping, Log: log}))
	defer srv.Close()

	call := func(method, path string) (int, handlers.ErrorBody) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var body handlers.ErrorBody
		if resp.StatusCode >= 400 {
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("%s %s: %d %q is not the JSON error shape", method, path, resp.StatusCode, raw)
			}
		}
		return resp.StatusCode, body
	}
	create := func() (int, handlers.ErrorBody) { return call(http.MethodPost, "/api/v1/login/scenes") }

	if status, body := call(http.MethodGet, "/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz before: %d %+v", status, body)
	}
	full.Store(true)
	created := 0
	for {
		status, body := create()
		if status == http.StatusCreated {
			created++
			if created > 200 {
				t.Fatal("200 logins created while checkpoints fail: the overlay has no limit")
			}
			continue
		}
		if status != http.StatusServiceUnavailable || body.Error != login.EUNAVAILABLE {
			t.Fatalf("create past the overlay limit: %d %+v, want 503 unavailable", status, body)
		}
		break
	}
	if created == 0 {
		t.Fatal("no login created before the limit")
	}
	if err := b.Checkpoint(t.Context()); err == nil {
		t.Fatal("checkpoint on a full disk: nil")
	}
	status, body := call(http.MethodGet, "/readyz")
	if status != http.StatusServiceUnavailable || !strings.Contains(body.Message, "writes refused") {
		t.Fatalf("/readyz with the overlay full: %d %+v, want 503 naming the refusal", status, body)
	}

	full.Store(false)
	drainOverlay(t, b)
	if status, body := call(http.MethodGet, "/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz after a checkpoint worked: %d %+v", status, body)
	}
	if status, body := create(); status != http.StatusCreated {
		t.Fatalf("create after a checkpoint worked: %d %+v", status, body)
	}
}
