package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// Movable is a store whose users and sessions can be copied to another
// store (wxlogin migrate). Scenes, one-time codes and callback records are
// not moved: they live minutes (a day for callback records), and the
// service is stopped while it moves.
type Movable interface {
	// EachUser and EachSession call fn with every record.
	EachUser(ctx context.Context, fn func(*login.User) error) error
	EachSession(ctx context.Context, fn func(*login.Session) error) error
	// HasUsersOrSessions reports whether the store holds any.
	HasUsersOrSessions(ctx context.Context) (bool, error)
	// ImportUser writes u unless the store has the same openid with at
	// least as many logins (then it reports false): running a move twice
	// changes nothing, and a count is never lowered.
	ImportUser(ctx context.Context, u *login.User) (bool, error)
	// ImportSession writes s unless it exists; it reports whether it wrote.
	ImportSession(ctx context.Context, s *login.Session) (bool, error)
}

var (
	_ Movable        = (*Bolt)(nil)
	_ Movable        = (*Redis)(nil)
	_ login.UserData = (*Bolt)(nil)
	_ login.UserData = (*Redis)(nil)
)

// MoveReport says what Move did.
type MoveReport struct {
	Users, UsersKept       int // written; already in the target with as many logins
	Sessions, SessionsKept int // written; already there or expired
}

// ErrTargetNotEmpty is returned by Move when the target holds users or
// sessions and force is off.
var ErrTargetNotEmpty = errors.New("the target already holds users or sessions")

// Move copies every user and session of from into to. Users go first, so
// a session never points at a user the target lacks.
func Move(ctx context.Context, from, to Movable, force bool, now time.Time) (MoveReport, error) {
	var rep MoveReport
	if !force {
		busy, err := to.HasUsersOrSessions(ctx)
		if err != nil {
			return rep, fmt.Errorf("look at the target: %w", err)
		}
		if busy {
			return rep, ErrTargetNotEmpty
		}
	}
	err := from.EachUser(ctx, func(u *login.User) error {
		wrote, err := to.ImportUser(ctx, u)
		if err != nil {
			return fmt.Errorf("user %s: %w", u.ID, err)
		}
		if wrote {
			rep.Users++
		} else {
			rep.UsersKept++
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("move users: %w", err)
	}
	// Oldest expiry first: in Redis a user's session set lives as long as
	// the session added last.
	var sessions []*login.Session
	err = from.EachSession(ctx, func(s *login.Session) error {
		sessions = append(sessions, s)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("read sessions: %w", err)
	}
	slices.SortFunc(sessions, func(a, b *login.Session) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	for _, s := range sessions {
		if !now.Before(s.ExpiresAt) {
			rep.SessionsKept++
			continue
		}
		wrote, err := to.ImportSession(ctx, s)
		if err != nil {
			return rep, fmt.Errorf("move sessions: session of user %s: %w", s.UserID, err)
		}
		if wrote {
			rep.Sessions++
		} else {
			rep.SessionsKept++
		}
	}
	return rep, nil
}

// EachUser calls fn with every user, from bbolt after a checkpoint (the
// tool runs on a stopped service's file: nothing writes meanwhile).
func (b *Bolt) EachUser(ctx context.Context, fn func(*login.User) error) error {
	return eachBolt(ctx, b, bUsers, fn)
}

// EachSession calls fn with every session.
func (b *Bolt) EachSession(ctx context.Context, fn func(*login.Session) error) error {
	return eachBolt(ctx, b, bSessions, fn)
}

func eachBolt[T any](ctx context.Context, b *Bolt, bucket uint8, fn func(*T) error) error {
	if err := b.checkpointAll(ctx); err != nil {
		return err
	}
	tx, err := b.db.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return tx.Bucket(allBuckets[bucket]).ForEach(func(k, v []byte) error {
		rec, err := decode[T](v, string(k))
		if err != nil {
			return err
		}
		return fn(rec)
	})
}

// HasUsersOrSessions reports whether bbolt holds any user or session.
func (b *Bolt) HasUsersOrSessions(ctx context.Context) (bool, error) {
	var found bool
	err := b.write(ctx, func(w *writeTx) error {
		found = len(w.keysWithPrefix(bUsers, "")) > 0 || len(w.keysWithPrefix(bSessions, "")) > 0
		return nil
	})
	return found, err
}

// ImportUser writes u with its id mapping, replacing a user of the same
// openid that has fewer logins (and that user's id mapping).
func (b *Bolt) ImportUser(ctx context.Context, u *login.User) (bool, error) {
	var wrote bool
	err := b.write(ctx, func(w *writeTx) error {
		old, err := decode[login.User](w.get(bUsers, u.OpenID), u.OpenID)
		if err != nil {
			return err
		}
		wrote = old == nil || old.LoginCount < u.LoginCount
		if !wrote {
			return nil
		}
		if old != nil && old.ID != u.ID {
			w.del(bUserIDs, old.ID)
		}
		if err := w.putJSON(bUsers, u.OpenID, u); err != nil {
			return err
		}
		indexUser(w, u)
		return nil
	})
	return wrote, err
}

// ImportSession writes s with its index entries unless it exists.
func (b *Bolt) ImportSession(ctx context.Context, s *login.Session) (bool, error) {
	var wrote bool
	err := b.write(ctx, func(w *writeTx) error {
		wrote = w.get(bSessions, s.TokenHash) == nil
		if !wrote {
			return nil
		}
		if err := w.putJSON(bSessions, s.TokenHash, s); err != nil {
			return err
		}
		w.put(bSessionsDue, string(dueKey(s.ExpiresAt, s.TokenHash)), nil)
		w.put(bUserSessions, userSessionKey(s.UserID, s.TokenHash), nil)
		return nil
	})
	return wrote, err
}

// EachUser calls fn with every user (SCAN: a user written meanwhile may or
// may not be seen; the tool is meant for a stopped cluster).
func (r *Redis) EachUser(ctx context.Context, fn func(*login.User) error) error {
	return r.scanRecords(ctx, "user:", func(raw []byte, key string) error {
		u, err := decode[login.User](raw, key)
		if err != nil {
			return err
		}
		return fn(u)
	})
}

// EachSession calls fn with every session.
func (r *Redis) EachSession(ctx context.Context, fn func(*login.Session) error) error {
	return r.scanRecords(ctx, "sess:", func(raw []byte, key string) error {
		s, err := decode[login.Session](raw, key)
		if err != nil {
			return err
		}
		return fn(s)
	})
}

var errFound = errors.New("found")

// HasUsersOrSessions reports whether Redis holds any user or session under the prefix.
func (r *Redis) HasUsersOrSessions(ctx context.Context) (bool, error) {
	for _, kind := range []string{"user:", "sess:"} {
		err := r.scanRecords(ctx, kind, func([]byte, string) error { return errFound })
		if errors.Is(err, errFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// ImportUser writes u with its id mapping under WATCH of the user's key,
// replacing a user of the same openid that has fewer logins.
func (r *Redis) ImportUser(ctx context.Context, u *login.User) (bool, error) {
	var wrote bool
	err := r.watchRetry(ctx, func(tx *redis.Tx) error {
		old, err := readRecord[login.User](ctx, tx, r.userKey(u.OpenID))
		if err != nil {
			return err
		}
		wrote = old == nil || old.LoginCount < u.LoginCount
		if !wrote {
			return nil
		}
		enc, err := r.encodeWrite(ctx, login.UpdateKeys{OpenID: u.OpenID}, nil, login.WriteSet{User: u})
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if old != nil && old.ID != u.ID {
				p.Del(ctx, r.userIDKey(old.ID))
			}
			enc(p)
			return nil
		})
		return err
	}, r.userKey(u.OpenID))
	return wrote, err
}

// ImportSession writes s with its index entries unless it exists.
func (r *Redis) ImportSession(ctx context.Context, s *login.Session) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.sessionKey(s.TokenHash)).Result()
	if err != nil || n == 1 {
		return false, err
	}
	if err := r.CreateSession(ctx, s); err != nil {
		return false, err
	}
	return true, r.addUserSession(ctx, s)
}
