package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/cache"
)

// RedisCache is silenceper's cache.Cache on our go-redis v9 client, under our
// key prefix, so every instance shares one access token. (silenceper's own
// Redis cache is built on go-redis v8 and ignores prefixes.) With
// UseStableAK, instances that fetch a token at the same moment get the same
// one instead of invalidating each other's.
//
// Values come back as strings, as silenceper's own Redis cache returns them
// (its token code asserts .(string)).
//
// Each instance keeps a local copy of what it read or wrote: when Redis is
// unreachable the cache answers from it, so a Redis outage does not turn
// every QR request into a call to WeChat's token endpoint (2 000 a day).
type RedisCache struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	local   *MemoryCache
	log     *slog.Logger
}

var _ cache.ContextCache = (*RedisCache)(nil)

// NewRedisCache returns a cache whose keys live under prefix+"wechat:".
func NewRedisCache(rdb *redis.Client, prefix string, log *slog.Logger) *RedisCache {
	return &RedisCache{rdb: rdb, prefix: prefix + "wechat:", timeout: 2 * time.Second, local: NewMemoryCache(), log: log}
}

func (c *RedisCache) key(k string) string { return c.prefix + k }

// silenceper calls the context-free methods: bound each with our own timeout.
func (c *RedisCache) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Get returns the value or nil.
func (c *RedisCache) Get(key string) any { return c.GetContext(context.Background(), key) }

// GetContext returns the value or nil; on a Redis error, this instance's last copy.
func (c *RedisCache) GetContext(ctx context.Context, key string) any {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	k := c.key(key)
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get, pttl = p.Get(ctx, k), p.PTTL(ctx, k)
		return nil
	})
	switch {
	case errors.Is(err, redis.Nil):
		c.local.Delete(k)
		return nil
	case err != nil:
		c.log.Warn("wechat token cache: redis unavailable, using this instance's copy", "err", err)
		return c.local.Get(k)
	}
	v := get.Val()
	_ = c.local.Set(k, v, max(pttl.Val(), 0)) // -1: no expiry
	return v
}

// Set stores a value for timeout (0 = no expiry). A Redis failure is logged,
// not returned: silenceper would fail the token fetch that just succeeded.
func (c *RedisCache) Set(key string, val any, timeout time.Duration) error {
	return c.SetContext(context.Background(), key, val, timeout)
}

// SetContext stores a value for timeout.
func (c *RedisCache) SetContext(ctx context.Context, key string, val any, timeout time.Duration) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	s, err := cacheString(val)
	if err != nil {
		return err
	}
	k := c.key(key)
	_ = c.local.Set(k, s, timeout)
	if err := c.rdb.Set(ctx, k, s, max(timeout, 0)).Err(); err != nil {
		c.log.Warn("wechat token cache: redis unavailable, kept on this instance only", "err", err)
	}
	return nil
}

// IsExist reports whether a value exists.
func (c *RedisCache) IsExist(key string) bool { return c.Get(key) != nil }

// IsExistContext reports whether a value exists.
func (c *RedisCache) IsExistContext(ctx context.Context, key string) bool {
	return c.GetContext(ctx, key) != nil
}

// Delete removes a value.
func (c *RedisCache) Delete(key string) error { return c.DeleteContext(context.Background(), key) }

// DeleteContext removes a value, here and in Redis.
func (c *RedisCache) DeleteContext(ctx context.Context, key string) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	k := c.key(key)
	c.local.Delete(k)
	if err := c.rdb.Del(ctx, k).Err(); err != nil {
		return fmt.Errorf("wechat token cache: delete %s: %w", key, err)
	}
	return nil
}

// DeleteMatching removes every key containing sub (Client.dropToken uses it
// when WeChat rejects the cached token with 40001), here and in Redis.
func (c *RedisCache) DeleteMatching(sub string) {
	ctx, cancel := c.bounded(context.Background())
	defer cancel()
	c.local.DeleteMatching(sub)
	// SCAN walks the whole keyspace; this runs only when WeChat rejects a
	// token, which is rare.
	iter := c.rdb.Scan(ctx, 0, globEscape(c.prefix)+"*"+globEscape(sub)+"*", 1000).Iterator()
	var doomed []string
	for iter.Next(ctx) {
		if strings.Contains(strings.TrimPrefix(iter.Val(), c.prefix), sub) {
			doomed = append(doomed, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		c.log.Warn("wechat token cache: list keys to drop", "err", err)
		return
	}
	if len(doomed) == 0 {
		return
	}
	if err := c.rdb.Del(ctx, doomed...).Err(); err != nil {
		c.log.Warn("wechat token cache: drop keys", "err", err)
	}
}

// globEscape quotes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cacheString turns what silenceper stores (strings) into a Redis value.
func cacheString(val any) (string, error) {
	switch v := val.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case fmt.Stringer:
		return v.String(), nil
	}
	return "", fmt.Errorf("wechat token cache: cannot store a %T", val)
}
