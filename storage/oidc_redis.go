package storage

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// OIDCRedis keeps the OIDC provider's records in Redis, so every instance
// of a cluster signs with the same keys and any of them can finish a flow
// another started. Keys are <prefix>oidc:<kind>:<key>; expiry is Redis's own.
type OIDCRedis struct {
	rdb    *redis.Client
	prefix string
}

// NewOIDCRedis returns the OIDC records on rdb under prefix.
func NewOIDCRedis(rdb *redis.Client, prefix string) *OIDCRedis {
	return &OIDCRedis{rdb: rdb, prefix: prefix}
}

func (o *OIDCRedis) key(kind, key string) string { return o.prefix + "oidc:" + kind + ":" + key }

// ttl is Redis's expiry for a record that lives until expires (0 = forever).
func ttl(expires time.Time) time.Duration {
	if expires.IsZero() {
		return 0
	}
	return max(time.Until(expires), time.Millisecond)
}

// Put stores value under kind/key until expires (zero: forever).
func (o *OIDCRedis) Put(ctx context.Context, kind, key string, value []byte, expires time.Time) error {
	if err := o.rdb.Set(ctx, o.key(kind, key), value, ttl(expires)).Err(); err != nil {
		return login.ErrUnavailable("oidc put "+kind, err)
	}
	return nil
}

// Add stores value only when kind/key is free (SET NX); it reports whether it did.
func (o *OIDCRedis) Add(ctx context.Context, kind, key string, value []byte, expires time.Time) (bool, error) {
	_, err := o.rdb.SetArgs(ctx, o.key(kind, key), value, redis.SetArgs{Mode: "NX", TTL: ttl(expires)}).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, login.ErrUnavailable("oidc add "+kind, err)
	}
	return true, nil
}

// Get returns the record under kind/key; login.ErrNotFound when it is missing.
func (o *OIDCRedis) Get(ctx context.Context, kind, key string) ([]byte, error) {
	v, err := o.rdb.Get(ctx, o.key(kind, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, login.ErrNotFound
	}
	if err != nil {
		return nil, login.ErrUnavailable("oidc get "+kind, err)
	}
	return v, nil
}

// Take returns the record under kind/key and deletes it in one command
// (GETDEL), so of two instances taking the same code exactly one gets it.
func (o *OIDCRedis) Take(ctx context.Context, kind, key string) ([]byte, error) {
	v, err := o.rdb.GetDel(ctx, o.key(kind, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, login.ErrNotFound
	}
	if err != nil {
		return nil, login.ErrUnavailable("oidc take "+kind, err)
	}
	return v, nil
}

// updateScript replaces a record only if it still holds what was read,
// keeping its TTL.
var updateScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`)

// Update replaces the record under kind/key with fn's result, keeping its
// expiry; fn's error aborts and is returned. A concurrent change makes it read
// and decide again. login.ErrNotFound when the record is missing.
func (o *OIDCRedis) Update(ctx context.Context, kind, key string, fn func(old []byte) ([]byte, error)) error {
	k := o.key(kind, key)
	for attempt := 1; ; attempt++ {
		old, err := o.Get(ctx, kind, key)
		if err != nil {
			return err
		}
		next, err := fn(old)
		if err != nil {
			return err
		}
		n, err := updateScript.Run(ctx, o.rdb, []string{k}, old, next).Int()
		if err != nil {
			return login.ErrUnavailable("oidc update "+kind, err)
		}
		if n == 1 {
			return nil
		}
		if attempt == 20 {
			return login.ErrUnavailable("oidc update "+kind, errors.New("too many concurrent changes"))
		}
		time.Sleep(backoff(attempt))
	}
}

// Delete removes kind/key.
func (o *OIDCRedis) Delete(ctx context.Context, kind, key string) error {
	if err := o.rdb.Del(ctx, o.key(kind, key)).Err(); err != nil {
		return login.ErrUnavailable("oidc delete "+kind, err)
	}
	return nil
}

// PurgeExpired does nothing: Redis expires the records itself.
func (o *OIDCRedis) PurgeExpired(ctx context.Context) (int, error) { return 0, nil }
