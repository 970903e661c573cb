package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// queryKey holds the body hash a signed WeChat callback query came with
// (wechat.QueryBindings), under the store's prefix: "cbq:<query>".
func (r *Redis) queryKey(query string) string { return r.prefix + "cbq:" + query }

// BindQuery binds a signed callback query to the hash of its body until the
// given time, shared by every instance: SET NX claims the query for the
// first body, and GET in the same command returns the claim that was there
// before, so two instances receiving the query at once agree on one body.
func (r *Redis) BindQuery(ctx context.Context, query string, bodyHash [sha256.Size]byte, until time.Time) (bool, error) {
	prev, err := r.rdb.SetArgs(ctx, r.queryKey(query), bodyHash[:], redis.SetArgs{
		Mode: "NX", Get: true, TTL: keepFor(until),
	}).Result()
	switch {
	case errors.Is(err, redis.Nil): // nothing was there: the query is ours now
		return true, nil
	case err != nil:
		return false, wrap("bind callback query", err)
	}
	return prev == string(bodyHash[:]), nil
}
