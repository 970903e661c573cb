// Package redistest gives tests a connection to the real Redis CI starts
// and a key prefix of their own, cleaned up afterwards. A missing Redis fails
// the test with a clear message; it never skips it.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// URL is the Redis the tests use; .ci/run starts one there.
const URL = "redis://127.0.0.1:6379/0"

// Client connects to the Redis at url (configure may adjust the options) and
// closes the connection when the test ends.
func Client(t testing.TB, url string, configure ...func(*redis.Options)) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range configure {
		c(opt)
	}
	rdb := redis.NewClient(opt)
	Ready(t, rdb)
	return rdb
}

// Ready fails the test unless rdb answers, and closes rdb when the test ends.
func Ready(t testing.TB, rdb *redis.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Fatalf("Redis is not reachable at %s (%v); these tests need a real server: "+
			`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no (.ci/run does this)`,
			rdb.Options().Addr, err)
	}
	t.Cleanup(func() { rdb.Close() }) // registered first, so it runs after the key cleanup
}

// DeadAddr returns a loopback address where nobody listens (a port that was
// just free), for tests of a Redis that is down.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// DownClient is a client of a Redis that is down: short dial timeout, no
// retries, closed when the test ends.
func DownClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: DeadAddr(t), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Prefix returns a key prefix of its own for one test and deletes every key
// under it when the test ends.
func Prefix(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	prefix := "wxlogin-test:" + Unique() + ":"
	t.Cleanup(func() { deleteKeys(t, rdb, prefix) })
	return prefix
}

// Unique returns a short random name (prefixes, connection names).
func Unique() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteKeys removes every key under prefix, found with SCAN (never KEYS on a
// shared server).
func deleteKeys(t testing.TB, rdb *redis.Client, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
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
