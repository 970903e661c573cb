package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// Redis is a login.Store on one Redis server, shared by every instance.
//
// Keys (all under the prefix, default "wxlogin:"):
//
//	scene:<id>     JSON scene, expires at NextCheck()+FinishedTTL (the sweeper
//	               normally deletes it first; the TTL only cleans up after a
//	               cluster that stopped sweeping)
//	user:<openid>  JSON user, kept forever (the login count)
//	cb:<key>       JSON callback record, expires a day after it was handled
//	sess:<hash>    JSON session under the token's SHA-256, expires with it
//	due:scenes     ZSET scene id → NextCheck, for DueScenes
//	due:cb         ZSET dedupe key → HandledAt+DedupeTTL, for Purge
//	due:sess       ZSET token hash → ExpiresAt, for Purge
//	code:<code>    id of the waiting scene holding a login code, expires
//	               with the scene's wait (redis_codes.go)
//	codemiss:<openid>  ZSET of a sender's recent wrong login codes
//	codelock:<openid>  end of a sender's lockout (Unix ms)
//
// ZSET scores are Unix microseconds: exact in a float64 (UnixNano is not).
//
// Update reads its keys under WATCH and commits with MULTI/EXEC, retrying
// when another instance changed a watched key in between (the UpdateFunc is
// pure, so re-running it is safe). Multi-key commands need every key on one
// node: for Redis Cluster use a hash-tagged prefix such as "{wxlogin}:".
type Redis struct {
	rdb    *redis.Client
	prefix string
}

// Tuning of optimistic retries: under heavy contention on one key (many
// logins of one user at once) each EXEC round lets one writer through.
const (
	redisMaxAttempts = 200
	redisMaxBackoff  = 20 * time.Millisecond
)

// RedisLogger makes go-redis's own messages (such as "failed to dial" while
// Redis is down) slog warnings instead of lines on stderr. go-redis has one
// logger per process: pass it to redis.SetLogger once, at start.
func RedisLogger(log *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{log}
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// NewRedisClient parses a redis:// or rediss:// URL and returns a client with
// timeouts short enough that a stalled Redis fails requests (503) instead of
// hanging them.
func NewRedisClient(rawURL string) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("WXLOGIN_REDIS_URL: %w", err)
	}
	if opt.DialTimeout == 5*time.Second || opt.DialTimeout == 0 {
		opt.DialTimeout = 2 * time.Second
	}
	if opt.ReadTimeout == 3*time.Second || opt.ReadTimeout == 0 {
		opt.ReadTimeout = 2 * time.Second
	}
	if opt.WriteTimeout == 3*time.Second || opt.WriteTimeout == 0 {
		opt.WriteTimeout = 2 * time.Second
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 2 // go-redis dials 5 times by default: a down Redis would hold each request
	}
	return redis.NewClient(opt), nil
}

// NewRedis returns a store on rdb under prefix. Close closes rdb.
func NewRedis(rdb *redis.Client, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

// Client is the underlying client (shared with the event transport and the
// WeChat token cache).
func (r *Redis) Client() *redis.Client { return r.rdb }

// Close closes the client.
func (r *Redis) Close() error { return r.rdb.Close() }

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return login.ErrUnavailable("ping redis", err)
	}
	return nil
}

func (r *Redis) sceneKey(id string) string    { return r.prefix + "scene:" + id }
func (r *Redis) userKey(openID string) string { return r.prefix + "user:" + openID }
func (r *Redis) recordKey(k string) string    { return r.prefix + "cb:" + k }
func (r *Redis) sessionKey(h string) string   { return r.prefix + "sess:" + h }
func (r *Redis) dueScenes() string            { return r.prefix + "due:scenes" }
func (r *Redis) dueRecords() string           { return r.prefix + "due:cb" }
func (r *Redis) dueSessions() string          { return r.prefix + "due:sess" }

// createSceneScript stores a scene only if its id is free, with its index
// entry and, when KEYS[3] is given, its login code claimed (SET NX: on
// every instance at once), in one step. 0: the id exists; -1: the code is taken.
var createSceneScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if KEYS[3] and not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PXAT', ARGV[5]) then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1`)

// CreateScene stores a new scene; an existing id is a conflict, a login
// code another waiting scene holds is login.ErrLoginCodeTaken.
func (r *Redis) CreateScene(ctx context.Context, s *login.Scene) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("create scene: encode: %w", err)
	}
	keys := []string{r.sceneKey(s.ID), r.dueScenes()}
	if s.LoginCode != "" {
		keys = append(keys, r.loginCodeKey(s.LoginCode))
	}
	created, err := createSceneScript.Run(ctx, r.rdb, keys,
		raw, expireAt(sceneKeep(s)), score(s.NextCheck()), s.ID, expireAt(s.ExpiresAt)).Int()
	if err != nil {
		return login.ErrUnavailable("create scene", err)
	}
	switch created {
	case 0:
		return login.Errorf(login.ECONFLICT, "scene exists")
	case -1:
		return login.ErrLoginCodeTaken
	}
	return nil
}

// Scene reads a scene.
func (r *Redis) Scene(ctx context.Context, id string) (*login.Scene, error) {
	return getRecord[login.Scene](ctx, r.rdb, r.sceneKey(id), "read scene")
}

// User reads a user by openid.
func (r *Redis) User(ctx context.Context, openID string) (*login.User, error) {
	return getRecord[login.User](ctx, r.rdb, r.userKey(openID), "read user")
}

// Session reads a session by token hash.
func (r *Redis) Session(ctx context.Context, tokenHash string) (*login.Session, error) {
	return getRecord[login.Session](ctx, r.rdb, r.sessionKey(tokenHash), "read session")
}

// Update runs fn on the named records and commits its Write atomically:
// WATCH the keys, read them, decide, MULTI/EXEC. If another writer touched a
// watched key, EXEC fails and the whole round runs again.
func (r *Redis) Update(ctx context.Context, k login.UpdateKeys, fn login.UpdateFunc) error {
	var watched []string
	if k.SceneID != "" {
		watched = append(watched, r.sceneKey(k.SceneID))
	}
	if k.OpenID != "" {
		watched = append(watched, r.userKey(k.OpenID))
	}
	if k.DedupeKey != "" {
		watched = append(watched, r.recordKey(k.DedupeKey))
	}
	round := func(tx *redis.Tx) error { return r.updateRound(ctx, tx, k, fn) }
	for attempt := 1; ; attempt++ {
		err := r.rdb.Watch(ctx, round, watched...)
		if !errors.Is(err, redis.TxFailedErr) {
			return wrap("update", err)
		}
		if attempt == redisMaxAttempts {
			return login.ErrUnavailable("update", fmt.Errorf("gave up after %d conflicting attempts", attempt))
		}
		select { // an unreferenced timer is collected (Go 1.23+): no Stop needed
		case <-ctx.Done():
			return login.ErrUnavailable("update", ctx.Err())
		case <-time.After(backoff(attempt)):
		}
	}
}

// updateRound is one optimistic attempt of Update on a connection that
// watches the keys.
func (r *Redis) updateRound(ctx context.Context, tx *redis.Tx, k login.UpdateKeys, fn login.UpdateFunc) error {
	var snap login.ReadSet
	var err error
	if k.SceneID != "" {
		if snap.Scene, err = readRecord[login.Scene](ctx, tx, r.sceneKey(k.SceneID)); err != nil {
			return err
		}
	}
	if k.OpenID != "" {
		if snap.User, err = readRecord[login.User](ctx, tx, r.userKey(k.OpenID)); err != nil {
			return err
		}
	}
	if k.DedupeKey != "" {
		if snap.Record, err = readRecord[login.Result](ctx, tx, r.recordKey(k.DedupeKey)); err != nil {
			return err
		}
	}
	old := snap.Scene
	w, err := fn(snap)
	if err != nil {
		return err
	}
	if w.Scene == nil && w.User == nil && (w.Record == nil || k.DedupeKey == "") {
		return nil // nothing to write; the read was consistent
	}
	enc, err := r.encodeWrite(ctx, k, old, w)
	if err != nil {
		return err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		enc(p)
		return nil
	})
	return err
}

// encodeWrite turns a Write into commands, mirroring Bolt.applyWrite:
// DeleteScene removes the scene that was read (and its index entry), a Scene
// is stored and re-indexed at its NextCheck, a Record only with a DedupeKey.
func (r *Redis) encodeWrite(ctx context.Context, k login.UpdateKeys, old *login.Scene, w login.WriteSet) (func(redis.Pipeliner), error) {
	var ops []func(redis.Pipeliner)
	switch {
	case w.DeleteScene && w.Scene != nil:
		if old != nil {
			ops = append(ops, func(p redis.Pipeliner) {
				p.Del(ctx, r.sceneKey(old.ID))
				p.ZRem(ctx, r.dueScenes(), old.ID)
				r.releaseLoginCode(ctx, p, old)
			})
		}
	case w.Scene != nil:
		raw, err := json.Marshal(w.Scene)
		if err != nil {
			return nil, fmt.Errorf("encode scene: %w", err)
		}
		s := w.Scene
		ops = append(ops, func(p redis.Pipeliner) {
			if old != nil && old.ID != s.ID {
				p.ZRem(ctx, r.dueScenes(), old.ID)
			}
			p.Set(ctx, r.sceneKey(s.ID), raw, keepFor(sceneKeep(s)))
			p.ZAdd(ctx, r.dueScenes(), redis.Z{Score: score(s.NextCheck()), Member: s.ID})
			if !s.Status.Waiting() {
				r.releaseLoginCode(ctx, p, s)
			}
		})
	}
	if w.User != nil {
		raw, err := json.Marshal(w.User)
		if err != nil {
			return nil, fmt.Errorf("encode user: %w", err)
		}
		key := r.userKey(w.User.OpenID)
		u := w.User
		ops = append(ops, func(p redis.Pipeliner) {
			p.Set(ctx, key, raw, 0)
			if u.ID != "" {
				p.Set(ctx, r.userIDKey(u.ID), u.OpenID, 0) // admin_redis.go
			}
		})
	}
	if w.Record != nil && k.DedupeKey != "" {
		raw, err := json.Marshal(w.Record)
		if err != nil {
			return nil, fmt.Errorf("encode callback record: %w", err)
		}
		due := w.Record.HandledAt.Add(login.DedupeTTL)
		ops = append(ops, func(p redis.Pipeliner) {
			p.Set(ctx, r.recordKey(k.DedupeKey), raw, keepFor(due))
			p.ZAdd(ctx, r.dueRecords(), redis.Z{Score: score(due), Member: k.DedupeKey})
		})
	}
	return func(p redis.Pipeliner) {
		for _, op := range ops {
			op(p)
		}
	}, nil
}

// dueScenesScript lists due scene ids in NextCheck order and drops index
// entries whose scene is gone (its TTL ran out while no sweeper ran), so a
// stale entry cannot block the list forever.
var dueScenesScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    table.insert(out, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out`)

// DueScenes lists scenes whose next check is at or before now, earliest first.
func (r *Redis) DueScenes(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	ids, err := dueScenesScript.Run(ctx, r.rdb, []string{r.dueScenes()},
		score(now), limit, r.prefix+"scene:").StringSlice()
	if err != nil {
		return nil, login.ErrUnavailable("list due scenes", err)
	}
	return ids, nil
}

// CreateSession stores a session by its token hash.
func (r *Redis) CreateSession(ctx context.Context, s *login.Session) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("create session: encode: %w", err)
	}
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.sessionKey(s.TokenHash), raw, keepFor(s.ExpiresAt))
		p.ZAdd(ctx, r.dueSessions(), redis.Z{Score: score(s.ExpiresAt), Member: s.TokenHash})
		r.indexSession(ctx, p, s)
		return nil
	})
	if err != nil {
		return login.ErrUnavailable("create session", err)
	}
	return nil
}

// DeleteSession removes a session; removing a missing one is not an error.
func (r *Redis) DeleteSession(ctx context.Context, tokenHash string) error {
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.sessionKey(tokenHash))
		p.ZRem(ctx, r.dueSessions(), tokenHash)
		return nil
	})
	if err != nil {
		return login.ErrUnavailable("delete session", err)
	}
	return nil
}

// purgeScript deletes the records of one expiry index that are due, at most
// ARGV[3] per call (as Bolt's Purge does), with their index entries.
var purgeScript = redis.NewScript(`
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, k in ipairs(keys) do
  redis.call('DEL', ARGV[2] .. k)
  redis.call('ZREM', KEYS[1], k)
end
return #keys`)

// Purge deletes callback records older than a day and expired sessions. Redis
// would also expire them by TTL; the indexes make Purge exact at the
// caller's clock, as with Bolt.
func (r *Redis) Purge(ctx context.Context, now time.Time) error {
	const batch = 10000 // bounded per call, as Bolt's Purge
	for _, ix := range []struct{ index, prefix string }{
		{r.dueRecords(), r.prefix + "cb:"},
		{r.dueSessions(), r.prefix + "sess:"},
	} {
		if err := purgeScript.Run(ctx, r.rdb, []string{ix.index}, score(now), ix.prefix, batch).Err(); err != nil {
			return login.ErrUnavailable("purge", err)
		}
	}
	return nil
}

// getRecord reads one JSON record; a missing key is login.ErrNotFound.
func getRecord[T any](ctx context.Context, c redis.Cmdable, key, op string) (*T, error) {
	v, err := readRecord[T](ctx, c, key)
	if err != nil {
		return nil, wrap(op, err)
	}
	if v == nil {
		return nil, login.ErrNotFound
	}
	return v, nil
}

// readRecord reads one JSON record; a missing key is (nil, nil).
func readRecord[T any](ctx context.Context, c redis.Cmdable, key string) (*T, error) {
	raw, err := c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("decode record %q: %w", key, err)
	}
	return v, nil
}

// sceneKeep is how long Redis keeps a scene if the sweeper never deletes it:
// past every window in which the service still reads it.
func sceneKeep(s *login.Scene) time.Time { return s.NextCheck().Add(login.FinishedTTL) }

// minKeep keeps a record written with a time already past (a test clock, a
// slow request) long enough to be read back; the service checks expiry
// itself, the TTL only reclaims memory.
const minKeep = time.Minute

// keepFor is the TTL that keeps a key until at least at.
func keepFor(at time.Time) time.Duration {
	return max(time.Until(at), minKeep)
}

// expireAt is keepFor as an absolute Unix time in milliseconds (SET PXAT).
func expireAt(at time.Time) string {
	if floor := time.Now().Add(minKeep); at.Before(floor) {
		at = floor
	}
	return strconv.FormatInt(at.UnixMilli(), 10)
}

// score is a ZSET score: Unix microseconds, exact in a float64.
func score(t time.Time) float64 { return float64(t.UnixMicro()) }

// backoff is a random wait before the next optimistic attempt, growing with
// the attempt number, so conflicting writers spread out instead of colliding again.
// It is not the events package's reconnect backoff: that one waits out a Redis
// that is down (100 ms doubling to seconds, no jitter needed for one subscriber),
// this one separates writers racing on a WATCHed key (microseconds, random).
func backoff(attempt int) time.Duration {
	ceiling := min(time.Duration(attempt)*200*time.Microsecond, redisMaxBackoff)
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}
