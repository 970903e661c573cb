package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/storage"
)

// testRedisURL is the real Redis the tests use; CI (.ci/run) starts one there.
const testRedisURL = "redis://127.0.0.1:6379/0"

// newTestRedisClient connects to the test Redis and fails the test (never
// skips it) when nobody answers: CI starts Redis, so a missing server is a
// broken environment, not an optional feature.
func newTestRedisClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb, err := storage.NewRedisClient(testRedisURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Fatalf("Redis is not reachable at %s (%v). The Redis half of the store tests needs a real server: "+
			`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no (.ci/run does this)`,
			testRedisURL, err)
	}
	t.Cleanup(func() { rdb.Close() }) // registered first, so it runs after the key cleanup
	return rdb
}

// newTestPrefix returns a key prefix of its own for one test and deletes
// every key under it when the test ends.
func newTestPrefix(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "wxlogin-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { deleteKeys(t, rdb, prefix) })
	return prefix
}

// deleteKeys removes every key under prefix.
func deleteKeys(t testing.TB, rdb *redis.Client, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := keysUnder(ctx, rdb, prefix)
	if err != nil {
		t.Errorf("clean up redis keys %s*: %v", prefix, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Errorf("clean up redis keys %s*: %v", prefix, err)
			return
		}
		keys = keys[n:]
	}
}

// keysUnder lists the keys under prefix with SCAN (never KEYS on a shared server).
func keysUnder(ctx context.Context, rdb *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// newTestRedisStore is a Redis store on its own prefix; its client is closed at cleanup.
func newTestRedisStore(t testing.TB) (*storage.Redis, *redis.Client, string) {
	t.Helper()
	rdb := newTestRedisClient(t)
	prefix := newTestPrefix(t, rdb)
	return storage.NewRedis(rdb, prefix), rdb, prefix
}
