// Package storage implements login.Store on bbolt (the default, one file) and
// on Redis (several instances).
//
// With bbolt, a write becomes durable in Bolt.write (write.go): under
// writeMu it reads, decides and appends one journal record
// (journal.Journal.Append), then waits until that record is written and
// fdatasync'ed (journal.Journal.Wait), sharing the sync with the writes
// waiting at the same moment. Reads see the write at once through the
// overlay (overlay.go), waiting for the same sync; twice a second a
// checkpoint (checkpoint.go) commits the overlay into bbolt. After a crash,
// OpenBolt replays into bbolt what the journal holds beyond bbolt's last
// checkpoint.
//
// Construction: OpenBolt takes functional options (With…) with documented
// defaults; NewRedis takes its client and key prefix.
package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"wxlogin/login"
	"wxlogin/storage/journal"
)

// Buckets, by the index the journal records them with (never renumber).
// The *Due buckets are expiry indexes: keys are a big-endian UnixNano
// followed by the record key, so a cursor walks them in time order.
const (
	bScenes uint8 = iota
	bScenesDue
	bUsers
	bCallbacks
	bCallbacksDue
	bSessions
	bSessionsDue
	bUserIDs       // user id → openid (admin_bolt.go)
	bUserSessions  // user id, 0, token hash → nothing (admin_bolt.go)
	bLoginCodes    // login code → id of the waiting scene holding it (codes.go)
	bCodeMisses    // openid → its recent wrong login codes and lockout
	bCodeMissesDue // expiry index of bCodeMisses
)

var allBuckets = [][]byte{
	bScenes:        []byte("scenes"),
	bScenesDue:     []byte("scenes_due"),
	bUsers:         []byte("users"),
	bCallbacks:     []byte("callbacks"),
	bCallbacksDue:  []byte("callbacks_due"),
	bSessions:      []byte("sessions"),
	bSessionsDue:   []byte("sessions_due"),
	bUserIDs:       []byte("user_ids"),
	bUserSessions:  []byte("user_sessions"),
	bLoginCodes:    []byte("login_codes"),
	bCodeMisses:    []byte("code_misses"),
	bCodeMissesDue: []byte("code_misses_due"),
}

// bucketMeta holds the last journal generation written into bbolt.
var (
	bucketMeta    = []byte("meta")
	keyJournalGen = []byte("journal_gen")
)

// checkpointEvery is how often bbolt is brought up to date with the journal
// (sooner when a generation passes journal.RotateBytes). Each checkpoint is
// one bbolt commit for everything written since the previous one.
const checkpointEvery = 500 * time.Millisecond

// DefaultOverlayLimit is how many bytes of writes may wait in memory for a
// checkpoint into bbolt before writes are refused (WithOverlayLimit).
// Normally a checkpoint every half second leaves well under a megabyte;
// this is reached only when checkpoints keep failing.
const DefaultOverlayLimit = 64 << 20

// Bolt is a login.Store on one bbolt file and its write-ahead journal
// (package journal). A write returns once its journal record is synced
// (Bolt.write); reads see it at once through an in-memory overlay of the
// writes not yet in bbolt; a background checkpoint moves them into bbolt in
// one commit and empties the overlay.
type Bolt struct {
	db      *bolt.DB
	journal *journal.Journal
	log     *slog.Logger
	timings func(phase string, d time.Duration)

	// Lock order: checkpointMu, then writeMu, then (leaves, each taken
	// only inside its own type's methods and never with the other) the
	// overlay's and the journal's locks. Nobody holds writeMu while waiting
	// for a journal sync: writers queue behind the decision, not the disk.
	//
	// checkpointMu serialises checkpoints; it guards uncommitted.
	checkpointMu sync.Mutex
	uncommitted  *closedGeneration // switched out of the journal, not yet committed to bbolt: retried as it is
	// writeMu orders writes: each reads, decides and appends its journal
	// record under it, so the journal's order is the order of the changes.
	// A generation switch and the removal of checkpointed overlay entries
	// happen under it too, so a write sees one consistent state.
	writeMu sync.Mutex

	overlay      *overlay
	overlayLimit int64

	checkpointFault func() error // see boltConfig

	lastCheckpointErr atomic.Pointer[error] // nil after a checkpoint that worked (for Ping)
	generationFull    chan struct{}         // a journal generation passed RotateBytes: checkpoint now
	stop              chan struct{}
	loopDone          chan struct{}
	closeOnce         sync.Once
}

// BoltOption configures OpenBolt.
type BoltOption func(*boltConfig)

type boltConfig struct {
	lockTimeout  time.Duration
	log          *slog.Logger
	sync         journal.SyncFunc
	every        time.Duration // checkpoint interval
	timings      func(phase string, d time.Duration)
	overlayLimit int64
	// checkpointFault, when set (tests only), runs before each
	// checkpoint's bbolt commit and fails it with its error: a full or
	// failing disk under bbolt, which cannot be had for real without
	// privileges.
	checkpointFault func() error
}

// WithLockTimeout bounds the wait for the file lock (default 1 s), so a second
// process on the same file fails fast.
func WithLockTimeout(d time.Duration) BoltOption { return func(c *boltConfig) { c.lockTimeout = d } }

// WithLogger sets where checkpoint failures and replays are logged.
func WithLogger(l *slog.Logger) BoltOption { return func(c *boltConfig) { c.log = l } }

// WithJournalSync replaces the journal's fdatasync, so a test can make the
// disk stall or fail under a real store.
func WithJournalSync(sync func(*os.File) error) BoltOption {
	return func(c *boltConfig) { c.sync = func(f *os.File, _ int64) error { return sync(f) } }
}

// WithTimings reports how long each journal sync ("journal_sync": one write
// and fdatasync, shared by the writes waiting) and each checkpoint
// ("checkpoint": one bbolt commit) took, for metrics.
func WithTimings(observe func(phase string, d time.Duration)) BoltOption {
	return func(c *boltConfig) { c.timings = observe }
}

// WithOverlayLimit sets how many bytes of writes may wait in memory for a
// checkpoint into bbolt (default DefaultOverlayLimit). Past it, writes fail
// as unavailable (503) and Ping says why, until a checkpoint succeeds:
// memory stays bounded while bbolt cannot be written.
func WithOverlayLimit(bytes int64) BoltOption { return func(c *boltConfig) { c.overlayLimit = bytes } }

// OpenBolt opens (or creates) the database file at path and its journal
// (path-wal.0, path-wal.1), and replays into bbolt what the journal holds
// beyond bbolt's last checkpoint (after a crash).
func OpenBolt(path string, opts ...BoltOption) (*Bolt, error) {
	cfg := boltConfig{lockTimeout: time.Second, log: slog.Default(), every: checkpointEvery,
		timings: func(string, time.Duration) {}, overlayLimit: DefaultOverlayLimit}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.overlayLimit <= 0 {
		return nil, fmt.Errorf("open database %s: overlay limit %d: want a positive number of bytes", path, cfg.overlayLimit)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open database %s: the file is locked by another process (is wxlogin already running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	var checkpointed uint64
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append(allBuckets, bucketMeta) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyJournalGen); len(v) == 8 {
			checkpointed = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: create buckets: %w", path, err)
	}
	if err := checkFormat(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	b := &Bolt{
		db:              db,
		log:             cfg.log,
		timings:         cfg.timings,
		overlay:         newOverlay(),
		overlayLimit:    cfg.overlayLimit,
		checkpointFault: cfg.checkpointFault,
		generationFull:  make(chan struct{}, 1),
		stop:            make(chan struct{}),
		loopDone:        make(chan struct{}),
	}
	// The journal's files are opened only now, under bbolt's file lock.
	b.journal, err = journal.Open(path, checkpointed, replayInto(db, cfg.log), journal.Config{
		Sync:        cfg.sync,
		ObserveSync: func(d time.Duration) { cfg.timings("journal_sync", d) },
		OnFull: func() {
			select {
			case b.generationFull <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := upgradeFormat(db); err != nil {
		b.journal.Close()
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	go b.checkpointLoop(cfg.every)
	return b, nil
}

// DB exposes the bbolt handle (consistency checks in tests and tools).
// Writes reach it at the next checkpoint: call Checkpoint first to see them.
func (b *Bolt) DB() *bolt.DB { return b.db }

// Close moves every write into bbolt and closes the journal and the file.
func (b *Bolt) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.loopDone
		err = b.checkpoint()
		if jerr := b.journal.Close(); err == nil {
			err = jerr
		}
		if derr := b.db.Close(); err == nil {
			err = derr
		}
	})
	return err
}

// Ping checks that the journal works, that writes are accepted, that
// checkpoints succeed and that the database can be read.
func (b *Bolt) Ping(ctx context.Context) error {
	if err := b.journal.Err(); err != nil {
		return err
	}
	if err := b.overlayFull(); err != nil {
		return err
	}
	if err := b.checkpointErr(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(allBuckets[bScenes]) == nil {
			return errors.New("scenes bucket missing")
		}
		return nil
	})
}

func (b *Bolt) checkpointErr() error {
	if p := b.lastCheckpointErr.Load(); p != nil {
		return *p
	}
	return nil
}

// overlayFull refuses writes while the overlay holds more than its limit.
func (b *Bolt) overlayFull() error {
	n := b.overlay.size()
	if n <= b.overlayLimit {
		return nil
	}
	cause := b.checkpointErr()
	if cause == nil {
		cause = errors.New("none failed yet")
	}
	return fmt.Errorf("writes refused: %d bytes of writes wait for a checkpoint into bbolt, past the limit of %d (last checkpoint: %w)",
		n, b.overlayLimit, cause)
}

// CreateScene stores a new scene.
func (b *Bolt) CreateScene(ctx context.Context, s *login.Scene) error {
	err := b.write(ctx, func(w *writeTx) error {
		if w.get(bScenes, s.ID) != nil {
			return login.Errorf(login.ECONFLICT, "scene exists")
		}
		if err := claimLoginCode(w, s); err != nil {
			return err
		}
		return putScene(w, nil, s)
	})
	return wrap("create scene", err)
}

// Scene reads a scene.
func (b *Bolt) Scene(ctx context.Context, id string) (*login.Scene, error) {
	s, err := read[login.Scene](ctx, b, bScenes, id)
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
	u, err := read[login.User](ctx, b, bUsers, openID)
	if err != nil {
		return nil, wrap("read user", err)
	}
	if u == nil {
		return nil, login.ErrNotFound
	}
	return u, nil
}

// Update runs fn on the named records and commits its Write atomically:
// one journal record.
func (b *Bolt) Update(ctx context.Context, k login.UpdateKeys, fn login.UpdateFunc) error {
	err := b.write(ctx, func(w *writeTx) error {
		var snap login.ReadSet
		var err error
		if k.SceneID != "" {
			if snap.Scene, err = decode[login.Scene](w.get(bScenes, k.SceneID), k.SceneID); err != nil {
				return err
			}
		}
		if k.OpenID != "" {
			if snap.User, err = decode[login.User](w.get(bUsers, k.OpenID), k.OpenID); err != nil {
				return err
			}
		}
		if k.DedupeKey != "" {
			if snap.Record, err = decode[login.Result](w.get(bCallbacks, k.DedupeKey), k.DedupeKey); err != nil {
				return err
			}
		}
		// A copy: fn may change the scene it was given in place, and the
		// old expiry-index entry must be found by the old time.
		var old *login.Scene
		if snap.Scene != nil {
			c := *snap.Scene
			old = &c
		}
		wr, err := fn(snap)
		if err != nil {
			return err
		}
		return applyWrite(w, k, old, wr)
	})
	return wrap("update", err)
}

func applyWrite(w *writeTx, k login.UpdateKeys, old *login.Scene, wr login.WriteSet) error {
	switch {
	case wr.DeleteScene && wr.Scene != nil:
		deleteScene(w, old)
	case wr.Scene != nil:
		if err := putScene(w, old, wr.Scene); err != nil {
			return err
		}
	}
	if wr.User != nil {
		if err := w.putJSON(bUsers, wr.User.OpenID, wr.User); err != nil {
			return err
		}
		indexUser(w, wr.User)
	}
	if wr.Record != nil && k.DedupeKey != "" {
		if err := w.putJSON(bCallbacks, k.DedupeKey, wr.Record); err != nil {
			return err
		}
		w.put(bCallbacksDue, string(dueKey(wr.Record.HandledAt.Add(login.DedupeTTL), k.DedupeKey)), nil)
	}
	return nil
}

// DueScenes lists scenes whose next check is at or before now.
func (b *Bolt) DueScenes(ctx context.Context, now time.Time, limit int) ([]string, error) {
	keys, err := b.dueKeys(nil, bScenesDue, now, limit)
	if err != nil {
		return nil, wrap("list due scenes", err)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k[8:]
	}
	return ids, nil
}

// CreateSession stores a session by its token hash.
func (b *Bolt) CreateSession(ctx context.Context, s *login.Session) error {
	err := b.write(ctx, func(w *writeTx) error {
		if err := w.putJSON(bSessions, s.TokenHash, s); err != nil {
			return err
		}
		w.put(bSessionsDue, string(dueKey(s.ExpiresAt, s.TokenHash)), nil)
		w.put(bUserSessions, userSessionKey(s.UserID, s.TokenHash), nil)
		return nil
	})
	return wrap("create session", err)
}

// Session reads a session by token hash.
func (b *Bolt) Session(ctx context.Context, tokenHash string) (*login.Session, error) {
	s, err := read[login.Session](ctx, b, bSessions, tokenHash)
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
	err := b.write(ctx, func(w *writeTx) error {
		s, err := decode[login.Session](w.get(bSessions, tokenHash), tokenHash)
		if err != nil || s == nil {
			return err
		}
		deleteSession(w, s)
		return nil
	})
	return wrap("delete session", err)
}

// purgeBatch bounds one Purge call (one journal record): the sweeper calls
// again on its next tick.
const purgeBatch = 10000

// Purge deletes callback records older than a day and expired sessions,
// walking the expiry indexes (a bounded amount per call).
func (b *Bolt) Purge(ctx context.Context, now time.Time) error {
	err := b.write(ctx, func(w *writeTx) error {
		purgeIndex(w, bCallbacksDue, bCallbacks, now)
		purgeSessions(w, now)
		purgeIndex(w, bCodeMissesDue, bCodeMisses, now)
		return nil
	})
	return wrap("purge", err)
}

func purgeIndex(w *writeTx, index, records uint8, now time.Time) {
	for _, k := range w.dueKeys(index, now, purgeBatch) {
		w.del(records, k[8:])
		w.del(index, k)
	}
}

// putScene writes a scene and moves its expiry-index entry.
func putScene(w *writeTx, old, s *login.Scene) error {
	if old != nil {
		w.del(bScenesDue, string(dueKey(old.NextCheck(), old.ID)))
	}
	if err := w.putJSON(bScenes, s.ID, s); err != nil {
		return err
	}
	w.put(bScenesDue, string(dueKey(s.NextCheck(), s.ID)), nil)
	if !s.Status.Waiting() {
		releaseLoginCode(w, s)
	}
	return nil
}

func deleteScene(w *writeTx, old *login.Scene) {
	if old == nil {
		return
	}
	w.del(bScenesDue, string(dueKey(old.NextCheck(), old.ID)))
	w.del(bScenes, old.ID)
	releaseLoginCode(w, old)
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

// decode turns a stored value into a record; nil stays nil (not found).
func decode[T any](raw []byte, key string) (*T, error) {
	if raw == nil {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("decode record %q: %w", key, err)
	}
	return v, nil
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
