package storage_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"wxlogin/internal/redistest"
	"wxlogin/storage"
)

// newTestRedisClient connects to the test Redis with the service's own client
// settings (redistest fails the test, never skips it, when nobody answers).
func newTestRedisClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb, err := storage.NewRedisClient(redistest.URL)
	if err != nil {
		t.Fatal(err)
	}
	redistest.Ready(t, rdb)
	return rdb
}

// newTestRedisStore is a Redis store on its own prefix; its client is closed at cleanup.
func newTestRedisStore(t testing.TB) (*storage.Redis, *redis.Client, string) {
	t.Helper()
	rdb := newTestRedisClient(t)
	prefix := redistest.Prefix(t, rdb)
	return storage.NewRedis(rdb, prefix), rdb, prefix
}

func TestRedisLoggerWritesSlogWarnings(t *testing.T) {
	var buf bytes.Buffer
	l := storage.RedisLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "refused")
	got := buf.String()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, `detail="redis: connection pool: failed to dial after 5 attempts: refused"`) {
		t.Fatalf("log line %q", got)
	}
}
