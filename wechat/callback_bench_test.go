package wechat_test

import (
	"context"
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
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
)

const benchToken = "bench-token"

// newBenchCallback is the real webhook over a real service on bbolt.
func newBenchCallback(b *testing.B) (*wechat.Callback, *login.Service) {
	b.Helper()
	db, err := storage.OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	hub := events.NewHub(events.WithHeartbeat(time.Hour))
	b.Cleanup(func() { hub.Close(); db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	client := wechat.NewClient(wechat.Config{AppID: "wxbench", AppSecret: "s", Token: benchToken}, log)
	qr := qrFunc(func(_ context.Context, id string, _ time.Duration) (login.QR, error) {
		return login.QR{URL: "http://weixin.qq.com/q/" + id}, nil
	})
	svc := login.NewService(db, hub, qr, login.WithLogger(log))
	return wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: benchToken, Log: log}), svc
}

type qrFunc func(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error)

func (f qrFunc) IssueQR(ctx context.Context, sceneID string, ttl time.Duration) (login.QR, error) {
	return f(ctx, sceneID, ttl)
}

// BenchmarkValidSignature is the SHA-1 signature check on every callback.
func BenchmarkValidSignature(b *testing.B) {
	sim := &wechat.Simulator{Token: benchToken}
	req, err := sim.Request(context.Background(), wechat.ScanEvent("s", "o", false, time.Now()), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	q := req.URL.Query()
	b.ReportAllocs()
	for range b.N {
		if !wechat.ValidSignature(benchToken, q.Get("timestamp"), q.Get("nonce"), q.Get("signature")) {
			b.Fatal("signature rejected")
		}
	}
}

// BenchmarkCallbackParse is the webhook up to the domain: body limit,
// signature, timestamp, XML parse through silenceper, and a "success"
// answer, for an event that changes nothing (a plain follow).
func BenchmarkCallbackParse(b *testing.B) {
	cb, _ := newBenchCallback(b)
	sim := &wechat.Simulator{URL: "http://wxlogin/wechat/callback", Token: benchToken}
	ev := wechat.Event{OpenID: "oBENCH", Event: "subscribe", CreateTime: time.Now()}
	b.ReportAllocs()
	for range b.N {
		req, err := sim.Request(context.Background(), ev, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		rec := httptest.NewRecorder()
		cb.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.String() != "success" {
			b.Fatalf("answer %d %q", rec.Code, rec.Body)
		}
	}
}

// BenchmarkCallbackScan is a whole confirmed scan: parse, one durable
// transaction (scene, count, dedupe record), the push, and the reply text.
// Parallel, as WeChat's callbacks arrive.
func BenchmarkCallbackScan(b *testing.B) {
	cb, svc := newBenchCallback(b)
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		ns, err := svc.CreateScene(ctx, login.ClientMeta{})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = ns.Scene.ID
	}
	sim := &wechat.Simulator{URL: "http://wxlogin/wechat/callback", Token: benchToken}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1)) - 1
			openID := fmt.Sprintf("oBENCH%04d", i%500)
			req, err := sim.Request(ctx, wechat.ScanEvent(ids[i], openID, false, time.Now()), time.Now())
			if err != nil {
				b.Error(err)
				return
			}
			rec := httptest.NewRecorder()
			cb.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "登录成功") {
				b.Errorf("answer %d %q", rec.Code, rec.Body)
				return
			}
		}
	})
}
