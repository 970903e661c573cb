package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
)

// never keeps the background checkpoint out of a test that checkpoints by hand.
func never(c *boltConfig) { c.every = time.Hour }

func openTestBolt(t *testing.T, path string, opts ...BoltOption) *Bolt {
	t.Helper()
	b, err := OpenBolt(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crash stops a store the way kill -9 does, as far as its files can tell:
// what was synced to the journal stays there, nothing more reaches bbolt.
func crash(t *testing.T, b *Bolt) {
	t.Helper()
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.loopDone
		b.journal.Abandon()
		if err := b.db.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// count adds one login to openID, as a scan does: read, decide, write.
func count(ctx context.Context, b *Bolt, openID string) error {
	return b.Update(ctx, login.UpdateKeys{OpenID: openID}, func(s login.ReadSet) (login.WriteSet, error) {
		u := login.User{OpenID: openID}
		if s.User != nil {
			u = *s.User
		}
		u.LoginCount++
		return login.WriteSet{User: &u}, nil
	})
}

// rawCounts reads login counts straight from the bbolt file, journal aside.
func rawCounts(t *testing.T, path string) map[string]int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return boltCounts(t, db)
}

func boltCounts(t *testing.T, db *bolt.DB) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return tx.Bucket(allBuckets[bUsers]).ForEach(func(k, v []byte) error {
			u, err := decode[login.User](v, string(k))
			if err == nil {
				got[string(k)] = u.LoginCount
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantCount(t *testing.T, b *Bolt, openID string, want int64) {
	t.Helper()
	u, err := b.User(t.Context(), openID)
	if want == 0 {
		if !errors.Is(err, login.ErrNotFound) {
			t.Fatalf("%s: %+v %v, want not found", openID, u, err)
		}
		return
	}
	if err != nil || u.LoginCount != want {
		t.Fatalf("%s: %+v %v, want %d logins", openID, u, err, want)
	}
}

// Writes acknowledged before a crash are in the journal only; reopening
// replays them into bbolt, across a checkpointed and an open generation.
func TestJournalReplaysAfterCrash(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "wx.db")
	b := openTestBolt(t, path, never)
	for range 3 {
		if err := count(ctx, b, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Checkpoint(ctx); err != nil { // alice=3 reaches bbolt
		t.Fatal(err)
	}
	for range 2 {
		if err := count(ctx, b, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if err := count(ctx, b, "bob"); err != nil {
		t.Fatal(err)
	}
	sess := &login.Session{TokenHash: "tok", OpenID: "bob", ExpiresAt: time.Now().Add(time.Hour)}
	if err := b.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	wantCount(t, b, "alice", 5)
	crash(t, b)

	if got := rawCounts(t, path); got["alice"] != 3 || got["bob"] != 0 {
		t.Fatalf("bbolt before replay: %v, want alice 3 and no bob (the rest only in the journal)", got)
	}
	b = openTestBolt(t, path, never)
	wantCount(t, b, "alice", 5)
	wantCount(t, b, "bob", 1)
	if s, err := b.Session(ctx, "tok"); err != nil || s.OpenID != "bob" {
		t.Fatalf("session after replay: %+v %v", s, err)
	}
	// The replay is in bbolt itself: a second crash before any checkpoint
	// loses nothing, and new writes go on from there.
	if got := boltCounts(t, b.db); got["alice"] != 5 || got["bob"] != 1 {
		t.Fatalf("bbolt after replay: %v", got)
	}
	if err := count(ctx, b, "bob"); err != nil {
		t.Fatal(err)
	}
	crash(t, b)
	b = openTestBolt(t, path, never)
	defer b.Close()
	wantCount(t, b, "alice", 5)
	wantCount(t, b, "bob", 2)
}

// A record torn by a crash mid-write (never acknowledged) ends replay; the
// records before it count, and the segment is written over afterwards.
func TestJournalTornRecord(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "wx.db")
	var seg string
	var off int64
	lastSync := func(c *boltConfig) {
		c.sync = func(f *os.File, end int64) error {
			seg, off = f.Name(), end
			return f.Sync()
		}
	}
	b := openTestBolt(t, path, never, lastSync)
	for _, id := range []string{"a", "b", "c"} {
		if err := count(ctx, b, id); err != nil {
			t.Fatal(err)
		}
	}
	crash(t, b)

	// Tear the last record: its final bytes never reached the disk.
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 5), off-5); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b = openTestBolt(t, path, never)
	wantCount(t, b, "a", 1)
	wantCount(t, b, "b", 1)
	wantCount(t, b, "c", 0)
	if err := count(ctx, b, "d"); err != nil {
		t.Fatal(err)
	}
	crash(t, b)
	b = openTestBolt(t, path, never)
	defer b.Close()
	wantCount(t, b, "a", 1)
	wantCount(t, b, "c", 0)
	wantCount(t, b, "d", 1)
}

// Many writers on the same keys while checkpoints run all the time: no
// count is lost or doubled, in the store or in bbolt after Close.
func TestJournalConcurrentWritesAndCheckpoints(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "wx.db")
	b := openTestBolt(t, path, func(c *boltConfig) { c.every = time.Millisecond })
	const writers, each = 8, 200 // each a multiple of the 4 users
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := count(ctx, b, fmt.Sprintf("user%d", i%4)); err != nil {
					errs <- err
					return
				}
				if i%10 == w { // reads race the checkpoints too
					if _, err := b.User(ctx, "user0"); err != nil && !errors.Is(err, login.ErrNotFound) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range 4 {
		wantCount(t, b, fmt.Sprintf("user%d", i), writers*each/4)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got := rawCounts(t, path)
	for i := range 4 {
		if n := got[fmt.Sprintf("user%d", i)]; n != writers*each/4 {
			t.Errorf("bbolt after Close: user%d = %d, want %d", i, n, writers*each/4)
		}
	}
}

// A failed sync stops the journal: the write that hit it fails, so does
// every later one, Ping says so, and after a restart every acknowledged
// write is there.
func TestJournalSyncFailureStopsWrites(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "wx.db")
	var broken atomic.Bool
	sync := func(f *os.File) error {
		if broken.Load() {
			return errors.New("EIO (injected)")
		}
		return f.Sync()
	}
	b := openTestBolt(t, path, never, WithJournalSync(sync))
	if err := count(ctx, b, "alice"); err != nil {
		t.Fatal(err)
	}
	broken.Store(true)
	if err := count(ctx, b, "alice"); login.ErrorCode(err) != login.EUNAVAILABLE {
		t.Fatalf("write on a failing disk: %v, want unavailable", err)
	}
	broken.Store(false)
	if err := count(ctx, b, "bob"); login.ErrorCode(err) != login.EUNAVAILABLE {
		t.Fatalf("write after the failure: %v, want unavailable until a restart", err)
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("Ping after a journal failure: nil")
	}
	if u, err := b.User(ctx, "alice"); err == nil {
		t.Fatalf("read of a write that failed to sync: %+v", u)
	}
	if err := b.Close(); err == nil {
		t.Fatal("Close after a journal failure: nil")
	}
	// The write whose sync failed may or may not have reached the disk
	// (its caller was told so: unavailable, and WeChat retries); the one
	// after the failure was never written.
	b = openTestBolt(t, path, never)
	defer b.Close()
	if u, err := b.User(ctx, "alice"); err != nil || u.LoginCount < 1 || u.LoginCount > 2 {
		t.Fatalf("alice after restart: %+v %v, want 1 or 2 logins", u, err)
	}
	wantCount(t, b, "bob", 0)
}

// Readers wait for the sync of what they read: nobody acts on a change a
// crash could still take back.
func TestJournalReadersWaitForSync(t *testing.T) {
	ctx := t.Context()
	gate := make(chan struct{})
	var stalled atomic.Bool
	sync := func(f *os.File) error {
		if stalled.Load() {
			<-gate
		}
		return f.Sync()
	}
	b := openTestBolt(t, filepath.Join(t.TempDir(), "wx.db"), never, WithJournalSync(sync))
	defer b.Close()
	stalled.Store(true)
	wrote := make(chan error, 1)
	go func() { wrote <- count(ctx, b, "alice") }()
	for b.journal.LastSeq() == 0 { // the write is in the overlay, its sync stalled
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if u, err := b.User(short, "alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read during the stalled sync: %+v %v, want it to wait", u, err)
	}
	// So does an update that reads it and refuses (a second use of a code).
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	refuse := func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{}, login.Errorf(login.ECONFLICT, "used")
	}
	if err := b.Update(short, login.UpdateKeys{OpenID: "alice"}, refuse); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refusal during the stalled sync: %v, want it to wait", err)
	}
	stalled.Store(false)
	close(gate)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	wantCount(t, b, "alice", 1)
}

// FuzzDecodeOps: replay decodes payloads a crash may have left in any
// state (the journal's CRC catches most, not a bug of ours); no bytes may
// make it panic, and what it accepts survives a round trip.
func FuzzDecodeOps(f *testing.F) {
	f.Add(encodeOps([]op{{bucket: bUsers, key: "o1", val: []byte(`{"login_count":1}`)}, {bucket: bScenesDue, key: "k", del: true}}))
	f.Add([]byte{9, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeOps(data)
		if err != nil {
			return
		}
		if again, err := decodeOps(encodeOps(ops)); err != nil || fmt.Sprint(again) != fmt.Sprint(ops) {
			t.Fatalf("round trip: %v → %v (%v)", ops, again, err)
		}
	})
}

// The expiry indexes are read by merging the overlay with bbolt: entries
// checkpointed into bbolt, moved or deleted since in the overlay, and new
// ones only in the overlay must come out as if there were one store.
func TestJournalDueKeysMergeOverlayAndBolt(t *testing.T) {
	ctx := t.Context()
	b := openTestBolt(t, filepath.Join(t.TempDir(), "wx.db"), never)
	defer b.Close()
	base := time.Now().Truncate(time.Second)
	scene := func(id string, expires time.Duration) *login.Scene {
		return &login.Scene{ID: id, Status: login.StatusPending, Version: 1, CreatedAt: base, ExpiresAt: base.Add(expires)}
	}
	// In bbolt after a checkpoint: a (1 s), b (2 s), c (3 s), d (4 s).
	for i, id := range []string{"a", "b", "c", "d"} {
		if err := b.CreateScene(ctx, scene(id, time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// In the overlay only: b moves to 10 s, c is deleted, e is new at 1.5 s.
	// (b is changed in place: the store must still find its old entry.)
	move := func(id string, fn func(*login.Scene) login.WriteSet) {
		t.Helper()
		err := b.Update(ctx, login.UpdateKeys{SceneID: id}, func(s login.ReadSet) (login.WriteSet, error) { return fn(s.Scene), nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	move("b", func(s *login.Scene) login.WriteSet {
		s.ExpiresAt = base.Add(10 * time.Second)
		return login.WriteSet{Scene: s}
	})
	move("c", func(s *login.Scene) login.WriteSet { return login.WriteSet{Scene: s, DeleteScene: true} })
	if err := b.CreateScene(ctx, scene("e", 1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, tt := range []struct {
			at    time.Duration
			limit int
			want  string
		}{
			{500 * time.Millisecond, 10, "[]"},
			{5 * time.Second, 10, "[a e d]"},
			{5 * time.Second, 2, "[a e]"},
			{time.Minute, 10, "[a e d b]"},
		} {
			got, err := b.DueScenes(ctx, base.Add(tt.at), tt.limit)
			if err != nil || fmt.Sprint(got) != tt.want {
				t.Errorf("%s: DueScenes(+%s, %d) = %v %v, want %s", when, tt.at, tt.limit, got, err, tt.want)
			}
		}
	}
	check("overlay over bbolt")
	if err := b.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	check("all in bbolt")
}

// Purge removes expired callback records and sessions wherever they are,
// bbolt or overlay, and leaves the rest.
func TestJournalPurgeAcrossOverlayAndBolt(t *testing.T) {
	ctx := t.Context()
	b := openTestBolt(t, filepath.Join(t.TempDir(), "wx.db"), never)
	defer b.Close()
	now := time.Now().Truncate(time.Second)
	record := func(key string, handled time.Time) {
		t.Helper()
		err := b.Update(ctx, login.UpdateKeys{DedupeKey: key}, func(login.ReadSet) (login.WriteSet, error) {
			return login.WriteSet{Record: &login.Result{Outcome: login.OutcomeConfirmed, HandledAt: handled}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	session := func(hash string, expires time.Time) {
		t.Helper()
		if err := b.CreateSession(ctx, &login.Session{TokenHash: hash, OpenID: "o", ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-login.DedupeTTL - time.Minute)
	record("old-in-bolt", old)
	record("new-in-bolt", now)
	session("expired-in-bolt", now.Add(-time.Minute))
	if err := b.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	record("old-in-overlay", old)
	record("new-in-overlay", now)
	session("expired-in-overlay", now.Add(-time.Minute))
	session("live", now.Add(time.Hour))

	if err := b.Purge(ctx, now); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	err := b.db.View(func(tx *bolt.Tx) error {
		for _, bk := range []uint8{bCallbacks, bCallbacksDue, bSessions, bSessionsDue} {
			name := string(allBuckets[bk])
			got[name] = []string{}
			_ = tx.Bucket(allBuckets[bk]).ForEach(func(k, _ []byte) error {
				if bk == bCallbacksDue || bk == bSessionsDue {
					k = k[8:]
				}
				got[name] = append(got[name], string(k))
				return nil
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"callbacks": {"new-in-bolt", "new-in-overlay"}, "callbacks_due": {"new-in-bolt", "new-in-overlay"},
		"sessions": {"live"}, "sessions_due": {"live"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after purge:\n got %v\nwant %v", got, want)
	}
}
