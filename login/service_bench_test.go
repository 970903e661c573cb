package login_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
)

// qrFunc is a QRIssuer from a function (WeChat's API is not what these
// benchmarks measure).
type qrFunc func(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error)

func (f qrFunc) IssueQR(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error) {
	return f(ctx, sceneID, ttl)
}

func newBenchService(b *testing.B) *login.Service {
	b.Helper()
	db, err := storage.OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	hub := events.NewHub(events.WithHeartbeat(time.Hour))
	b.Cleanup(func() { hub.Close(); db.Close() })
	qr := qrFunc(func(_ context.Context, id string, _ time.Duration) (login.QR, error) {
		return login.QR{URL: "http://weixin.qq.com/q/" + id, Ticket: id}, nil
	})
	return login.NewService(db, hub, qr, login.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
}

// BenchmarkCreateScene is POST /login/scenes below HTTP: random id and
// secret, and one durable insert. Parallel, so inserts share commits.
func BenchmarkCreateScene(b *testing.B) {
	svc := newBenchService(b)
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.CreateScene(ctx, login.ClientMeta{IP: "127.0.0.1", UserAgent: "bench"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkStatusRead is a poll below HTTP: load the scene, check the
// secret, render the view.
func BenchmarkStatusRead(b *testing.B) {
	svc := newBenchService(b)
	ctx := context.Background()
	scenes := make([]*login.NewScene, 256)
	for i := range scenes {
		ns, err := svc.CreateScene(ctx, login.ClientMeta{IP: "127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		scenes[i] = ns
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ns := scenes[int(n.Add(1))%len(scenes)]
			sc, err := svc.Authorize(ctx, ns.Scene.ID, ns.Secret)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := svc.ClientView(ctx, sc, ns.Secret); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCodeLogin is a login by message code below HTTP and WeChat's
// XML: look the code up, confirm the scene, count the login, keep the
// dedupe record; every count durable (journal fsync) before it returns.
// Parallel, as WeChat's messages arrive.
func BenchmarkCodeLogin(b *testing.B) {
	db, err := storage.OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	hub := events.NewHub(events.WithHeartbeat(time.Hour))
	b.Cleanup(func() { hub.Close(); db.Close() })
	svc := login.NewService(db, hub, nil, login.WithMethods(login.Methods{Code: true}),
		login.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx := context.Background()
	codes := make([]string, b.N)
	for i := range codes {
		ns, err := svc.CreateScene(ctx, login.ClientMeta{IP: "127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		codes[i] = ns.Scene.LoginCode
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			res, err := svc.ConfirmCode(ctx, "oBench_"+strconv.FormatInt(i%500, 10), codes[i], "msg-"+strconv.FormatInt(i, 10))
			if err != nil || res.Outcome != login.OutcomeConfirmed {
				b.Errorf("code login: %+v %v", res, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}
