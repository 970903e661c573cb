package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
)

// FormatVersion is the layout of the bbolt file this build writes:
//
//	1 (no "format" key): scenes, users, callbacks, sessions and their expiry indexes
//	2: also user_ids (user id → openid) and user_sessions (sessions by user)
//	3: also login_codes, code_misses and code_misses_due (login by message
//	   code); journal records may name these buckets, which a build of
//	   version 2 would take for a malformed record
//
// A file of a newer version is refused: an older build would not keep the
// indexes that build relies on.
const FormatVersion = 3

var keyFormat = []byte("format")

// formatOf reads the format version of an open file (1 when unmarked).
func formatOf(tx *bolt.Tx) uint64 {
	if m := tx.Bucket(bucketMeta); m != nil {
		if v := m.Get(keyFormat); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 1
}

// checkFormat refuses a file written by a newer wxlogin.
func checkFormat(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		if v := formatOf(tx); v > FormatVersion {
			return fmt.Errorf("the file has format version %d, written by a newer wxlogin; this build knows up to %d", v, FormatVersion)
		}
		return nil
	})
}

// upgradeFormat builds what a file of an older format lacks (the user and
// session indexes; the buckets of version 3 are made at every open), in one commit with the new version number, so a crash
// leaves either the old file or the upgraded one.
func upgradeFormat(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		if formatOf(tx) >= FormatVersion {
			return nil
		}
		ids, bySession := tx.Bucket(allBuckets[bUserIDs]), tx.Bucket(allBuckets[bUserSessions])
		err := tx.Bucket(allBuckets[bUsers]).ForEach(func(k, v []byte) error {
			u, err := decode[login.User](v, string(k))
			if err != nil || u.ID == "" {
				return err
			}
			return ids.Put([]byte(u.ID), openIDValue(u.OpenID))
		})
		if err != nil {
			return fmt.Errorf("upgrade format: index users: %w", err)
		}
		err = tx.Bucket(allBuckets[bSessions]).ForEach(func(k, v []byte) error {
			s, err := decode[login.Session](v, string(k))
			if err != nil {
				return err
			}
			return bySession.Put([]byte(userSessionKey(s.UserID, s.TokenHash)), nil)
		})
		if err != nil {
			return fmt.Errorf("upgrade format: index sessions: %w", err)
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], FormatVersion)
		return tx.Bucket(bucketMeta).Put(keyFormat, v[:])
	})
}

// openIDValue is the user_ids value: the openid as a JSON string, so it is
// read like every other record.
func openIDValue(openID string) []byte {
	raw, _ := json.Marshal(openID) // a string always encodes
	return raw
}

// userSessionKey is a user_sessions key: the user id, a zero byte (ids never
// hold one), the token hash.
func userSessionKey(userID, tokenHash string) string { return userID + "\x00" + tokenHash }

// indexUser keeps the id → openid index with the user it points at (a
// user's id never changes, so this rewrites the same value). A user without
// an id (only ever made by hand) cannot be found by one.
func indexUser(w *writeTx, u *login.User) {
	if u.ID != "" {
		w.put(bUserIDs, u.ID, openIDValue(u.OpenID))
	}
}

// deleteSession removes a session with its index entries.
func deleteSession(w *writeTx, s *login.Session) {
	w.del(bSessionsDue, string(dueKey(s.ExpiresAt, s.TokenHash)))
	w.del(bUserSessions, userSessionKey(s.UserID, s.TokenHash))
	w.del(bSessions, s.TokenHash)
}

// purgeSessions deletes expired sessions (a bounded amount per call) with
// their index entries.
func purgeSessions(w *writeTx, now time.Time) {
	for _, k := range w.dueKeys(bSessionsDue, now, purgeBatch) {
		hash := k[8:]
		if s, err := decode[login.Session](w.get(bSessions, hash), hash); err == nil && s != nil {
			w.del(bUserSessions, userSessionKey(s.UserID, hash))
		}
		w.del(bSessions, hash)
		w.del(bSessionsDue, k)
	}
}

// keysWithPrefix lists the current keys of a bucket that start with prefix,
// merging the overlay (writes not yet in bbolt) with bbolt, in key order.
func (w *writeTx) keysWithPrefix(bucket uint8, prefix string) []string {
	keys, decided, newest := w.b.overlay.scan(bucket, func(k string) bool { return strings.HasPrefix(k, prefix) })
	w.dependsOn = max(w.dependsOn, newest)
	c := w.tx.Bucket(allBuckets[bucket]).Cursor()
	p := []byte(prefix)
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if !decided[string(k)] {
			keys = append(keys, string(k))
		}
	}
	slices.Sort(keys)
	return keys
}

// sessionsOf reads the sessions of a user through the per-user index.
func (w *writeTx) sessionsOf(userID string) ([]*login.Session, error) {
	var out []*login.Session
	for _, k := range w.keysWithPrefix(bUserSessions, userID+"\x00") {
		hash := k[len(userID)+1:]
		s, err := decode[login.Session](w.get(bSessions, hash), hash)
		if err != nil {
			return nil, err
		}
		if s == nil { // an index entry whose session is gone: drop it on the next write
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// UserByID finds a user by its opaque id.
func (b *Bolt) UserByID(ctx context.Context, id string) (*login.User, error) {
	openID, err := read[string](ctx, b, bUserIDs, id)
	if err != nil {
		return nil, wrap("read user by id", err)
	}
	if openID == nil {
		return nil, login.ErrNotFound
	}
	u, err := b.User(ctx, *openID)
	if err == nil && u.ID != id {
		// The index outlived its user (a new one for the same openid since).
		return nil, login.ErrNotFound
	}
	return u, err
}

// UserSessions lists the user's sessions not yet purged.
func (b *Bolt) UserSessions(ctx context.Context, userID string) ([]login.Session, error) {
	var out []login.Session
	// A write that writes nothing: it reads the overlay and bbolt together
	// under writeMu and waits for what it read to be durable.
	err := b.write(ctx, func(w *writeTx) error {
		ss, err := w.sessionsOf(userID)
		for _, s := range ss {
			out = append(out, *s)
		}
		return err
	})
	return out, wrap("list user sessions", err)
}

// EndSessions deletes every session of the user, in one journal record.
func (b *Bolt) EndSessions(ctx context.Context, userID string) (int, error) {
	var n int
	err := b.write(ctx, func(w *writeTx) error {
		ss, err := w.sessionsOf(userID)
		if err != nil {
			return err
		}
		n = len(ss)
		for _, k := range w.keysWithPrefix(bUserSessions, userID+"\x00") {
			w.del(bUserSessions, k) // stale entries too
		}
		for _, s := range ss {
			deleteSession(w, s)
		}
		return nil
	})
	return n, wrap("end sessions", err)
}

// DeleteUser removes the user, both mappings, its sessions and the scenes
// its openid scanned, in one journal record.
func (b *Bolt) DeleteUser(ctx context.Context, userID string) (login.Erased, error) {
	var erased login.Erased
	err := b.write(ctx, func(w *writeTx) error {
		erased = login.Erased{}
		openID, err := decode[string](w.get(bUserIDs, userID), userID)
		if err != nil {
			return err
		}
		if openID == nil {
			return login.ErrNotFound
		}
		u, err := decode[login.User](w.get(bUsers, *openID), *openID)
		if err != nil {
			return err
		}
		if u == nil || u.ID != userID {
			// A stale mapping: the person's current user has another id.
			return errStaleIndex
		}
		w.del(bUserIDs, userID)
		ss, err := w.sessionsOf(userID)
		if err != nil {
			return err
		}
		for _, k := range w.keysWithPrefix(bUserSessions, userID+"\x00") {
			w.del(bUserSessions, k)
		}
		for _, s := range ss {
			deleteSession(w, s)
		}
		erased.Sessions = len(ss)
		for _, id := range w.keysWithPrefix(bScenes, "") {
			sc, err := decode[login.Scene](w.get(bScenes, id), id)
			if err != nil {
				return err
			}
			if sc != nil && sc.OpenID == *openID {
				deleteScene(w, sc)
				erased.Scenes++
			}
		}
		w.del(bUsers, *openID)
		return nil
	})
	if errors.Is(err, errStaleIndex) {
		return login.Erased{}, login.ErrNotFound
	}
	return erased, wrap("delete user", err)
}

// errStaleIndex rolls back a DeleteUser that found only a stale mapping.
var errStaleIndex = errors.New("stale user id index entry")
