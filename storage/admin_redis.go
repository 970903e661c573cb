package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// Keys of the operators' indexes (under the prefix):
//
//	uid:<id>       the user's openid, written with the user, kept forever
//	usess:<id>     SET of the user's session token hashes; expires with the
//	               newest session (a member whose session has gone is skipped)
//	meta:format    FormatVersion once the indexes cover every user and session
func (r *Redis) userIDKey(id string) string       { return r.prefix + "uid:" + id }
func (r *Redis) userSessionsKey(id string) string { return r.prefix + "usess:" + id }
func (r *Redis) formatKey() string                { return r.prefix + "meta:format" }

// indexSession adds a session to its user's set, in the session's MULTI.
// Every session lives SessionTTL, so the newest one expires last.
func (r *Redis) indexSession(ctx context.Context, p redis.Pipeliner, s *login.Session) {
	p.SAdd(ctx, r.userSessionsKey(s.UserID), s.TokenHash)
	p.PExpireAt(ctx, r.userSessionsKey(s.UserID), s.ExpiresAt)
}

// addUserSessionScript adds a session to its user's set and extends the
// set's life to the session's end, never shortening it (sessions come in
// any order when indexing or importing).
var addUserSessionScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local t = redis.call('PEXPIRETIME', KEYS[1])
if t < tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1`)

func (r *Redis) addUserSession(ctx context.Context, s *login.Session) error {
	return addUserSessionScript.Run(ctx, r.rdb, []string{r.userSessionsKey(s.UserID)},
		s.TokenHash, s.ExpiresAt.UnixMilli()).Err()
}

// ensureIndexed builds the indexes for data written before they existed
// (one SCAN of users and sessions, done once per Redis; the write path keeps
// them from then on). Running it twice writes the same entries again.
func (r *Redis) ensureIndexed(ctx context.Context) error {
	n, err := r.rdb.Exists(ctx, r.formatKey()).Result()
	if err != nil || n == 1 {
		return err
	}
	err = r.scanRecords(ctx, "user:", func(raw []byte, key string) error {
		u, err := decode[login.User](raw, key)
		if err != nil {
			return err
		}
		return r.rdb.Set(ctx, r.userIDKey(u.ID), u.OpenID, 0).Err()
	})
	if err != nil {
		return fmt.Errorf("index users: %w", err)
	}
	err = r.scanRecords(ctx, "sess:", func(raw []byte, key string) error {
		s, err := decode[login.Session](raw, key)
		if err != nil {
			return err
		}
		return r.addUserSession(ctx, s)
	})
	if err != nil {
		return fmt.Errorf("index sessions: %w", err)
	}
	return r.rdb.Set(ctx, r.formatKey(), FormatVersion, 0).Err()
}

// scanRecords calls fn with every record under prefix+kind (SCAN, 500 keys
// a round, MGET for their values). A key that vanished in between is skipped.
func (r *Redis) scanRecords(ctx context.Context, kind string, fn func(raw []byte, key string) error) error {
	iter := r.rdb.Scan(ctx, 0, globEscape(r.prefix+kind)+"*", 500).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		vals, err := r.rdb.MGet(ctx, batch...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if err := fn([]byte(s), batch[i]); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// globEscape makes a prefix match itself literally in a SCAN pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// UserByID finds a user by its opaque id.
func (r *Redis) UserByID(ctx context.Context, id string) (*login.User, error) {
	if err := r.ensureIndexed(ctx); err != nil {
		return nil, login.ErrUnavailable("read user by id", err)
	}
	openID, err := r.rdb.Get(ctx, r.userIDKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, login.ErrNotFound
	}
	if err != nil {
		return nil, login.ErrUnavailable("read user by id", err)
	}
	u, err := r.User(ctx, openID)
	if err == nil && u.ID != id {
		return nil, login.ErrNotFound // the mapping outlived its user
	}
	return u, err
}

// UserSessions lists the user's sessions that still exist.
func (r *Redis) UserSessions(ctx context.Context, userID string) ([]login.Session, error) {
	if err := r.ensureIndexed(ctx); err != nil {
		return nil, login.ErrUnavailable("list user sessions", err)
	}
	ss, err := r.sessionsOf(ctx, r.rdb, userID)
	if err != nil {
		return nil, wrap("list user sessions", err)
	}
	out := make([]login.Session, len(ss))
	for i, s := range ss {
		out[i] = *s
	}
	return out, nil
}

// sessionsOf reads the sessions in the user's set; members whose session
// expired or was deleted are skipped.
func (r *Redis) sessionsOf(ctx context.Context, c redis.Cmdable, userID string) ([]*login.Session, error) {
	hashes, err := c.SMembers(ctx, r.userSessionsKey(userID)).Result()
	if err != nil || len(hashes) == 0 {
		return nil, err
	}
	keys := make([]string, len(hashes))
	for i, h := range hashes {
		keys[i] = r.sessionKey(h)
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	var out []*login.Session
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue
		}
		s, err := decode[login.Session]([]byte(raw), keys[i])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// EndSessions deletes every session of the user in one MULTI, under WATCH of
// the user's set so a session created meanwhile is not missed.
func (r *Redis) EndSessions(ctx context.Context, userID string) (int, error) {
	if err := r.ensureIndexed(ctx); err != nil {
		return 0, login.ErrUnavailable("end sessions", err)
	}
	var n int
	err := r.watchRetry(ctx, func(tx *redis.Tx) error {
		ss, err := r.sessionsOf(ctx, tx, userID)
		if err != nil {
			return err
		}
		n = len(ss)
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			r.deleteSessions(ctx, p, userID, ss)
			return nil
		})
		return err
	}, r.userSessionsKey(userID))
	return n, wrap("end sessions", err)
}

func (r *Redis) deleteSessions(ctx context.Context, p redis.Pipeliner, userID string, ss []*login.Session) {
	for _, s := range ss {
		p.Del(ctx, r.sessionKey(s.TokenHash))
		p.ZRem(ctx, r.dueSessions(), s.TokenHash)
	}
	p.Del(ctx, r.userSessionsKey(userID))
}

// DeleteUser removes the user, both mappings, its sessions and the scenes
// its openid scanned, in one MULTI under WATCH of the id mapping, the user
// and the user's session set: a login or a new session for the user in
// between makes the round run again.
func (r *Redis) DeleteUser(ctx context.Context, userID string) (login.Erased, error) {
	if err := r.ensureIndexed(ctx); err != nil {
		return login.Erased{}, login.ErrUnavailable("delete user", err)
	}
	var erased login.Erased
	err := r.watchRetry(ctx, func(tx *redis.Tx) error {
		erased = login.Erased{}
		openID, err := tx.Get(ctx, r.userIDKey(userID)).Result()
		if errors.Is(err, redis.Nil) {
			return login.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := tx.Watch(ctx, r.userKey(openID)).Err(); err != nil {
			return err
		}
		u, err := readRecord[login.User](ctx, tx, r.userKey(openID))
		if err != nil {
			return err
		}
		if u == nil || u.ID != userID {
			return login.ErrNotFound
		}
		ss, err := r.sessionsOf(ctx, tx, userID)
		if err != nil {
			return err
		}
		scenes, err := r.scenesOf(ctx, tx, openID)
		if err != nil {
			return err
		}
		erased = login.Erased{Sessions: len(ss), Scenes: len(scenes)}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			r.deleteSessions(ctx, p, userID, ss)
			for _, id := range scenes {
				p.Del(ctx, r.sceneKey(id))
				p.ZRem(ctx, r.dueScenes(), id)
			}
			p.Del(ctx, r.userKey(openID), r.userIDKey(userID))
			return nil
		})
		return err
	}, r.userIDKey(userID), r.userSessionsKey(userID))
	if err != nil {
		return login.Erased{}, wrap("delete user", err)
	}
	return erased, nil
}

// scenesOf lists the scenes that name openID. Every scene is in the due
// index until it is deleted, and there are only as many as are being
// logged in with or finished in the last minutes.
func (r *Redis) scenesOf(ctx context.Context, c redis.Cmdable, openID string) ([]string, error) {
	ids, err := c.ZRange(ctx, r.dueScenes(), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	var out []string
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		keys := make([]string, len(chunk))
		for i, id := range chunk {
			keys[i] = r.sceneKey(id)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue
			}
			var sc struct {
				OpenID string `json:"openid"`
			}
			if err := json.Unmarshal([]byte(raw), &sc); err != nil {
				return nil, fmt.Errorf("decode record %q: %w", keys[i], err)
			}
			if sc.OpenID == openID {
				out = append(out, chunk[i])
			}
		}
	}
	return out, nil
}

// watchRetry runs round under WATCH of keys until EXEC succeeds, as Update
// does.
func (r *Redis) watchRetry(ctx context.Context, round func(*redis.Tx) error, keys ...string) error {
	for attempt := 1; ; attempt++ {
		err := r.rdb.Watch(ctx, round, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
		if attempt == redisMaxAttempts {
			return fmt.Errorf("gave up after %d conflicting attempts", attempt)
		}
		if err := sleepCtx(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
