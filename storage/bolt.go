// Package storage implements login.Store on bbolt (the default, one file) and
// on Redis (several instances).
package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"wxlogin/login"
)

// Bucket names. The *_due buckets are expiry indexes: keys are a big-endian
// UnixNano followed by the record key, so a cursor walks them in time order.
var (
	bucketScenes       = []byte("scenes")
	bucketScenesDue    = []byte("scenes_due")
	bucketUsers        = []byte("users")
	bucketCallbacks    = []byte("callbacks")
	bucketCallbacksDue = []byte("callbacks_due")
	bucketSessions     = []byte("sessions")
	bucketSessionsDue  = []byte("sessions_due")
	allBuckets         = [][]byte{bucketScenes, bucketScenesDue, bucketUsers, bucketCallbacks,
		bucketCallbacksDue, bucketSessions, bucketSessionsDue}
)

// Bolt is a login.Store on one bbolt file.
type Bolt struct {
	db      *bolt.DB
	commits *groupCommit
}

// BoltOption configures OpenBolt.
type BoltOption func(*boltConfig)

type boltConfig struct {
	lockTimeout time.Duration
}

// WithLockTimeout bounds the wait for the file lock (default 1 s), so a second
// process on the same file fails fast.
func WithLockTimeout(d time.Duration) BoltOption { return func(c *boltConfig) { c.lockTimeout = d } }

// OpenBolt opens (or creates) the database file at path.
func OpenBolt(path string, opts ...BoltOption) (*Bolt, error) {
	cfg := boltConfig{lockTimeout: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open database %s: the file is locked by another process (is wxlogin already running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: create buckets: %w", path, err)
	}
	return &Bolt{db: db, commits: &groupCommit{db: db}}, nil
}

// DB exposes the bbolt handle (consistency checks in tests and tools).
func (b *Bolt) DB() *bolt.DB { return b.db }

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

// Ping checks that the database can be read.
func (b *Bolt) Ping(ctx context.Context) error {
	return b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketScenes) == nil {
			return errors.New("scenes bucket missing")
		}
		return nil
	})
}

// CreateScene stores a new scene.
func (b *Bolt) CreateScene(ctx context.Context, s *login.Scene) error {
	err := b.commits.do(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketScenes).Get([]byte(s.ID)) != nil {
			return login.Errorf(login.ECONFLICT, "scene exists")
		}
		return putScene(tx, nil, s)
	})
	return wrap("create scene", err)
}

// Scene reads a scene.
func (b *Bolt) Scene(ctx context.Context, id string) (*login.Scene, error) {
	var s *login.Scene
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = getScene(tx, id)
		return err
	})
	if err != nil {
		return nil, wrap("read scene", err)
	}
	if s == nil {
		return nil, login.ErrNotFound
	}
	return s, nil
}

// User reads a user by openid.
func (b *Bolt) User(ctx context.Context, openID string) (*login.User, error) {
	var u *login.User
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		u, err = getJSON[login.User](tx.Bucket(bucketUsers), openID)
		return err
	})
	if err != nil {
		return nil, wrap("read user", err)
	}
	if u == nil {
		return nil, login.ErrNotFound
	}
	return u, nil
}

// Update runs fn on the named records and commits its Write in one
// transaction. Concurrent updates share commits (groupCommit).
func (b *Bolt) Update(ctx context.Context, k login.Keys, fn login.UpdateFunc) error {
	err := b.commits.do(func(tx *bolt.Tx) error {
		var snap login.Snapshot
		var err error
		if k.SceneID != "" {
			if snap.Scene, err = getScene(tx, k.SceneID); err != nil {
				return err
			}
		}
		if k.OpenID != "" {
			if snap.User, err = getJSON[login.User](tx.Bucket(bucketUsers), k.OpenID); err != nil {
				return err
			}
		}
		if k.DedupeKey != "" {
			if snap.Record, err = getJSON[login.CallbackRecord](tx.Bucket(bucketCallbacks), k.DedupeKey); err != nil {
				return err
			}
		}
		old := snap.Scene
		w, err := fn(snap)
		if err != nil {
			return err
		}
		return applyWrite(tx, k, old, w)
	})
	return wrap("update", err)
}

func applyWrite(tx *bolt.Tx, k login.Keys, old *login.Scene, w login.Write) error {
	switch {
	case w.DeleteScene && w.Scene != nil:
		if err := deleteScene(tx, old); err != nil {
			return err
		}
	case w.Scene != nil:
		if err := putScene(tx, old, w.Scene); err != nil {
			return err
		}
	}
	if w.User != nil {
		if err := putJSON(tx.Bucket(bucketUsers), w.User.OpenID, w.User); err != nil {
			return err
		}
	}
	if w.Record != nil && k.DedupeKey != "" {
		if err := putJSON(tx.Bucket(bucketCallbacks), k.DedupeKey, w.Record); err != nil {
			return err
		}
		due := w.Record.HandledAt.Add(login.DedupeTTL)
		if err := tx.Bucket(bucketCallbacksDue).Put(dueKey(due, k.DedupeKey), nil); err != nil {
			return err
		}
	}
	return nil
}

// DueScenes lists scenes whose next check is at or before now.
func (b *Bolt) DueScenes(ctx context.Context, now time.Time, limit int) ([]string, error) {
	var ids []string
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketScenesDue).Cursor()
		end := dueKey(now, "")
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end[:8]) <= 0 && len(ids) < limit; k, _ = c.Next() {
			ids = append(ids, string(k[8:]))
		}
		return nil
	})
	return ids, wrap("list due scenes", err)
}

// CreateSession stores a session by its token hash.
func (b *Bolt) CreateSession(ctx context.Context, s *login.Session) error {
	err := b.commits.do(func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bucketSessions), s.TokenHash, s); err != nil {
			return err
		}
		return tx.Bucket(bucketSessionsDue).Put(dueKey(s.ExpiresAt, s.TokenHash), nil)
	})
	return wrap("create session", err)
}

// Session reads a session by token hash.
func (b *Bolt) Session(ctx context.Context, tokenHash string) (*login.Session, error) {
	var s *login.Session
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = getJSON[login.Session](tx.Bucket(bucketSessions), tokenHash)
		return err
	})
	if err != nil {
		return nil, wrap("read session", err)
	}
	if s == nil {
		return nil, login.ErrNotFound
	}
	return s, nil
}

// DeleteSession removes a session; removing a missing one is not an error.
func (b *Bolt) DeleteSession(ctx context.Context, tokenHash string) error {
	err := b.commits.do(func(tx *bolt.Tx) error {
		s, err := getJSON[login.Session](tx.Bucket(bucketSessions), tokenHash)
		if err != nil || s == nil {
			return err
		}
		if err := tx.Bucket(bucketSessionsDue).Delete(dueKey(s.ExpiresAt, tokenHash)); err != nil {
			return err
		}
		return tx.Bucket(bucketSessions).Delete([]byte(tokenHash))
	})
	return wrap("delete session", err)
}

// Purge deletes callback records older than a day and expired sessions,
// walking the expiry indexes (a bounded amount per call).
func (b *Bolt) Purge(ctx context.Context, now time.Time) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := purgeIndex(tx, bucketCallbacksDue, bucketCallbacks, now); err != nil {
			return err
		}
		return purgeIndex(tx, bucketSessionsDue, bucketSessions, now)
	})
	return wrap("purge", err)
}

func purgeIndex(tx *bolt.Tx, index, records []byte, now time.Time) error {
	idx, recs := tx.Bucket(index), tx.Bucket(records)
	end := dueKey(now, "")
	c := idx.Cursor()
	for n, k := 0, firstKey(c); k != nil && n < 10000 && bytes.Compare(k[:8], end[:8]) <= 0; n++ {
		k = append([]byte(nil), k...) // cursor memory is not ours once we delete
		if err := recs.Delete(k[8:]); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
		k, _ = c.Seek(k)
	}
	return nil
}

func firstKey(c *bolt.Cursor) []byte {
	k, _ := c.First()
	return k
}

func getScene(tx *bolt.Tx, id string) (*login.Scene, error) {
	return getJSON[login.Scene](tx.Bucket(bucketScenes), id)
}

// putScene writes a scene and moves its expiry-index entry.
func putScene(tx *bolt.Tx, old, s *login.Scene) error {
	due := tx.Bucket(bucketScenesDue)
	if old != nil {
		if err := due.Delete(dueKey(old.NextCheck(), old.ID)); err != nil {
			return err
		}
	}
	if err := putJSON(tx.Bucket(bucketScenes), s.ID, s); err != nil {
		return err
	}
	return due.Put(dueKey(s.NextCheck(), s.ID), nil)
}

func deleteScene(tx *bolt.Tx, old *login.Scene) error {
	if old == nil {
		return nil
	}
	if err := tx.Bucket(bucketScenesDue).Delete(dueKey(old.NextCheck(), old.ID)); err != nil {
		return err
	}
	return tx.Bucket(bucketScenes).Delete([]byte(old.ID))
}

// dueKey is a big-endian time followed by the record key: bytewise order is time order.
func dueKey(t time.Time, key string) []byte {
	b := make([]byte, 8+len(key))
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	binary.BigEndian.PutUint64(b, uint64(ns))
	copy(b[8:], key)
	return b
}

func getJSON[T any](b *bolt.Bucket, key string) (*T, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("decode record %q: %w", key, err)
	}
	return v, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// groupCommit folds concurrent writers into shared commits: a commit starts
// as soon as the previous one ends, carrying every update that arrived
// meanwhile. bolt.DB.Batch instead waits MaxBatchDelay on a timer for
// company: a lone scan paid 0.5 ms plus the timer's wake-up, which a busy
// machine delays by milliseconds (BenchmarkBoltUpdate: 1.5 ms per update on
// tmpfs, all of it waiting). Like Batch, a function may run more than once
// and one that fails is retried alone so its error is its own.
type groupCommit struct {
	db *bolt.DB

	mu    sync.Mutex
	queue []commitCall
	busy  bool // a leader is committing; new calls wait for the next batch
}

type commitCall struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxCommitBatch bounds one transaction (bbolt's MaxBatchSize default).
const maxCommitBatch = 1000

var errTrySolo = errors.New("batched function failed; run it alone")

// do runs fn in a shared read-write transaction and returns once it is
// committed (fsync'ed).
func (g *groupCommit) do(fn func(*bolt.Tx) error) error {
	call := commitCall{fn: fn, err: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, call)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if lead {
		g.lead()
	}
	err := <-call.err
	if errors.Is(err, errTrySolo) {
		err = g.db.Update(fn)
	}
	return err
}

// lead commits the queued calls as one batch, then hands the next batch to
// a new leader, so no caller waits for commits other than its own.
func (g *groupCommit) lead() {
	g.mu.Lock()
	n := min(len(g.queue), maxCommitBatch)
	calls := slices.Clone(g.queue[:n])
	g.queue = g.queue[n:]
	g.mu.Unlock()

	g.commit(calls)

	g.mu.Lock()
	if len(g.queue) > 0 {
		go g.lead()
	} else {
		g.busy = false
		g.queue = nil
	}
	g.mu.Unlock()
}

func (g *groupCommit) commit(calls []commitCall) {
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := callSafely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.err <- err // nil, or a commit failure every caller shares
			}
			return
		}
		calls[failed].err <- errTrySolo
		calls = slices.Delete(calls, failed, failed+1)
	}
}

// callSafely turns a panic in fn into an error, so one bad update cannot
// take the other callers of its batch down with it.
func callSafely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in update: %v", p)
		}
	}()
	return fn(tx)
}

// wrap keeps domain errors as they are and marks everything else as a
// storage failure (503).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var le *login.Error
	if errors.As(err, &le) {
		return err
	}
	return login.ErrUnavailable(op, err)
}
