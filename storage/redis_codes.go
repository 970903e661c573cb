package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// Login codes and wrong-code counts on Redis (login.LoginCodeStore). A
// code is claimed with SET NX in the script that creates its scene, so two
// instances never hand out the same one; the key expires with the scene's
// wait, and the update that ends the scene deletes it if the scene still
// holds it.

func (r *Redis) loginCodeKey(code string) string { return r.prefix + "code:" + code }
func (r *Redis) missesKey(openID string) string  { return r.prefix + "codemiss:" + openID }
func (r *Redis) lockKey(openID string) string    { return r.prefix + "codelock:" + openID }

// releaseCodeScript deletes a login code's key only if it still names the
// scene (ARGV[1]): a newer scene may hold the code by now.
const releaseCodeScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`

// releaseLoginCode queues the release of s's code into the update's
// MULTI (EVAL rather than EVALSHA: a script missing from the cache inside
// MULTI would fail the whole transaction).
func (r *Redis) releaseLoginCode(ctx context.Context, p redis.Pipeliner, s *login.Scene) {
	if s.LoginCode != "" {
		p.Eval(ctx, releaseCodeScript, []string{r.loginCodeKey(s.LoginCode)}, s.ID)
	}
}

// SceneByLoginCode returns the id of the scene holding code.
func (r *Redis) SceneByLoginCode(ctx context.Context, code string) (string, error) {
	id, err := r.rdb.Get(ctx, r.loginCodeKey(code)).Result()
	if errors.Is(err, redis.Nil) {
		return "", login.ErrNotFound
	}
	if err != nil {
		return "", login.ErrUnavailable("read login code", err)
	}
	return id, nil
}

// CodeLockedUntil is when openID may send codes again.
func (r *Redis) CodeLockedUntil(ctx context.Context, openID string, now time.Time) (time.Time, error) {
	ms, err := r.rdb.Get(ctx, r.lockKey(openID)).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, login.ErrUnavailable("read code lockout", err)
	}
	until := time.UnixMilli(ms).UTC()
	if !until.After(now) {
		return time.Time{}, nil
	}
	return until, nil
}

// recordMissScript counts one miss (ARGV: now ms, window ms, limit,
// lockout ms, a unique member) in a sliding window and starts a lockout at
// the limit. Times are the caller's clock, as with Bolt; the TTLs only
// reclaim memory. A miss while locked out is not counted. Returns the
// lockout's end in ms when this miss started one, else 0.
var recordMissScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local lockout = tonumber(ARGV[4])
local locked = tonumber(redis.call('GET', KEYS[2]) or '0')
if locked > now then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], window + 60000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], now + lockout, 'PX', lockout + 60000)
  return now + lockout
end
return 0`)

// RecordCodeMiss counts a wrong code from openID.
func (r *Redis) RecordCodeMiss(ctx context.Context, openID string, now time.Time, p login.MissPolicy) (time.Time, error) {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	member := strconv.FormatInt(now.UnixMilli(), 10) + ":" + hex.EncodeToString(nonce[:])
	until, err := recordMissScript.Run(ctx, r.rdb, []string{r.missesKey(openID), r.lockKey(openID)},
		now.UnixMilli(), p.Window.Milliseconds(), p.Limit, p.Lockout.Milliseconds(), member).Int64()
	if err != nil {
		return time.Time{}, login.ErrUnavailable("record code miss", err)
	}
	if until == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(until).UTC(), nil
}
