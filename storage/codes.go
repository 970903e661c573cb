package storage

import (
	"context"
	"time"

	"wxlogin/login"
)

// Login codes and wrong-code counts on bbolt (login.LoginCodeStore). A
// scene's code is claimed in the write that creates the scene and released
// in the write that ends it, so the index never names a scene that has
// ended, except one whose expiry has passed before the sweeper wrote it:
// such a code may be claimed again at once.

// claimLoginCode indexes s's login code, unless a scene still waiting at
// s's creation holds it.
func claimLoginCode(w *writeTx, s *login.Scene) error {
	if s.LoginCode == "" {
		return nil
	}
	holder, err := decode[string](w.get(bLoginCodes, s.LoginCode), s.LoginCode)
	if err != nil {
		return err
	}
	if holder != nil {
		other, err := decode[login.Scene](w.get(bScenes, *holder), *holder)
		if err != nil {
			return err
		}
		if other != nil && other.StatusAt(s.CreatedAt).Waiting() {
			return login.ErrLoginCodeTaken
		}
	}
	return w.putJSON(bLoginCodes, s.LoginCode, s.ID)
}

// releaseLoginCode drops s's code from the index if s still holds it (a
// newer scene may have taken it over after s expired).
func releaseLoginCode(w *writeTx, s *login.Scene) {
	if s == nil || s.LoginCode == "" {
		return
	}
	holder, err := decode[string](w.get(bLoginCodes, s.LoginCode), s.LoginCode)
	if err == nil && holder != nil && *holder == s.ID {
		w.del(bLoginCodes, s.LoginCode)
	}
}

// SceneByLoginCode returns the id of the scene holding code.
func (b *Bolt) SceneByLoginCode(ctx context.Context, code string) (string, error) {
	id, err := read[string](ctx, b, bLoginCodes, code)
	if err != nil {
		return "", wrap("read login code", err)
	}
	if id == nil {
		return "", login.ErrNotFound
	}
	return *id, nil
}

// missRecord is one sender's recent wrong codes.
type missRecord struct {
	Misses      []time.Time `json:"misses,omitempty"` // within the window, oldest first
	LockedUntil time.Time   `json:"locked_until,omitzero"`
	Due         time.Time   `json:"due"` // when the record no longer matters (its expiry-index time)
}

// CodeLockedUntil is when openID may send codes again.
func (b *Bolt) CodeLockedUntil(ctx context.Context, openID string, now time.Time) (time.Time, error) {
	rec, err := read[missRecord](ctx, b, bCodeMisses, openID)
	if err != nil {
		return time.Time{}, wrap("read code misses", err)
	}
	if rec == nil || !rec.LockedUntil.After(now) {
		return time.Time{}, nil
	}
	return rec.LockedUntil, nil
}

// RecordCodeMiss counts a wrong code from openID.
func (b *Bolt) RecordCodeMiss(ctx context.Context, openID string, now time.Time, p login.MissPolicy) (time.Time, error) {
	var until time.Time
	err := b.write(ctx, func(w *writeTx) error {
		old, err := decode[missRecord](w.get(bCodeMisses, openID), openID)
		if err != nil {
			return err
		}
		next, locked := countMiss(old, now, p)
		until = locked
		if old != nil && !old.Due.Equal(next.Due) {
			w.del(bCodeMissesDue, string(dueKey(old.Due, openID)))
		}
		if err := w.putJSON(bCodeMisses, openID, next); err != nil {
			return err
		}
		w.put(bCodeMissesDue, string(dueKey(next.Due, openID)), nil)
		return nil
	})
	if err != nil {
		return time.Time{}, wrap("record code miss", err)
	}
	return until, nil
}

// countMiss adds a miss at now to old (nil: none yet) under policy p. It
// returns the new record and, when this miss starts a lockout, its end.
// A miss while locked out is not counted: the lockout does not grow.
func countMiss(old *missRecord, now time.Time, p login.MissPolicy) (missRecord, time.Time) {
	var next missRecord
	if old != nil {
		next.LockedUntil = old.LockedUntil
		for _, t := range old.Misses {
			if t.After(now.Add(-p.Window)) {
				next.Misses = append(next.Misses, t)
			}
		}
	}
	var locked time.Time
	if !next.LockedUntil.After(now) {
		next.LockedUntil = time.Time{}
		next.Misses = append(next.Misses, now)
		if len(next.Misses) >= p.Limit {
			next.Misses = nil
			next.LockedUntil = now.Add(p.Lockout)
			locked = next.LockedUntil
		}
	}
	next.Due = next.LockedUntil
	if n := len(next.Misses); n > 0 && next.Misses[n-1].Add(p.Window).After(next.Due) {
		next.Due = next.Misses[n-1].Add(p.Window)
	}
	return next, locked
}
