package storage_test

// One contract for login.Store, run against every implementation: bbolt in a
// temporary directory and Redis on a key prefix of its own. A behaviour the
// service relies on belongs here, so both stores keep it.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

// stores are the implementations under contract; each call opens a fresh,
// empty store that is closed and removed when the test ends.
var stores = []struct {
	name string
	open func(t *testing.T) login.Store
}{
	{"bolt", func(t *testing.T) login.Store {
		st, err := storage.OpenBolt(filepath.Join(t.TempDir(), "wxlogin.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"redis", func(t *testing.T) login.Store {
		st, _, _ := newTestRedisStore(t)
		return st
	}},
}

var contract = []struct {
	name string
	test func(t *testing.T, st login.Store)
}{
	{"CreateAndRead", testCreateAndRead},
	{"NotFound", testNotFound},
	{"UpdateSnapshotAndWrite", testUpdateSnapshotAndWrite},
	{"UpdateErrorWritesNothing", testUpdateErrorWritesNothing},
	{"UpdateCountsExactlyUnderConcurrency", testUpdateConcurrentCount},
	{"FirstScanWins", testFirstScanWins},
	{"DedupeRecord", testDedupeRecord},
	{"DeleteScene", testDeleteScene},
	{"DueScenesOrderAndLimit", testDueScenes},
	{"DueScenesFollowsUpdates", testDueScenesFollowsUpdates},
	{"Sessions", testSessions},
	{"Purge", testPurge},
	{"Ping", testPing},
}

func TestStoreContract(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					c.test(t, s.open(t))
				})
			}
		})
	}
}

// base is a fixed time near now (stores may keep records by wall clock, so
// it must not be far in the past), in UTC without a monotonic reading, so
// records compare equal after a round trip.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

var sceneSeq struct {
	sync.Mutex
	n int
}

// newScene is a pending scene expiring at exp, with a unique 22-character id.
func newScene(exp time.Time) *login.Scene {
	sceneSeq.Lock()
	sceneSeq.n++
	n := sceneSeq.n
	sceneSeq.Unlock()
	return &login.Scene{
		ID:         fmt.Sprintf("scene-%016d", n),
		SecretHash: []byte("0123456789abcdef0123456789abcdef"),
		Status:     login.StatusPending,
		Version:    1,
		CreatedAt:  exp.Add(-2 * time.Minute),
		ExpiresAt:  exp,
		QRURL:      "http://weixin.qq.com/q/test",
		ClientIP:   "192.0.2.1",
		UserAgent:  "contract-test",
	}
}

func mustCreate(t *testing.T, st login.Store, s *login.Scene) {
	t.Helper()
	if err := st.CreateScene(context.Background(), s); err != nil {
		t.Fatalf("create scene %s: %v", s.ID, err)
	}
}

func mustScene(t *testing.T, st login.Store, id string) *login.Scene {
	t.Helper()
	s, err := st.Scene(context.Background(), id)
	if err != nil {
		t.Fatalf("read scene %s: %v", id, err)
	}
	return s
}

func mustUpdate(t *testing.T, st login.Store, k login.UpdateKeys, fn login.UpdateFunc) {
	t.Helper()
	if err := st.Update(context.Background(), k, fn); err != nil {
		t.Fatalf("update %+v: %v", k, err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, login.ErrNotFound) || login.ErrorCode(err) != login.ENOTFOUND {
		t.Fatalf("%s: err = %v, want not_found", what, err)
	}
}

func testCreateAndRead(t *testing.T, st login.Store) {
	s := newScene(base().Add(2 * time.Minute))
	mustCreate(t, st, s)
	if got := mustScene(t, st, s.ID); !reflect.DeepEqual(got, s) {
		t.Fatalf("read back\n got %+v\nwant %+v", got, s)
	}
	err := st.CreateScene(context.Background(), s)
	if login.ErrorCode(err) != login.ECONFLICT {
		t.Fatalf("second create of %s: err = %v, want conflict", s.ID, err)
	}
}

func testNotFound(t *testing.T, st login.Store) {
	ctx := context.Background()
	_, err := st.Scene(ctx, "no-such-scene-00000000")
	wantNotFound(t, "scene", err)
	_, err = st.User(ctx, "no-such-openid")
	wantNotFound(t, "user", err)
	_, err = st.Session(ctx, "no-such-token-hash")
	wantNotFound(t, "session", err)
	if err := st.DeleteSession(ctx, "no-such-token-hash"); err != nil {
		t.Fatalf("delete a missing session: %v", err)
	}
	// An Update on missing records sees nils.
	mustUpdate(t, st, login.UpdateKeys{SceneID: "no-such-scene-00000000", OpenID: "nobody", DedupeKey: "nothing"},
		func(snap login.ReadSet) (login.WriteSet, error) {
			if snap.Scene != nil || snap.User != nil || snap.Record != nil {
				t.Errorf("snapshot of missing records = %+v, want all nil", snap)
			}
			return login.WriteSet{}, nil
		})
}

func testUpdateSnapshotAndWrite(t *testing.T, st login.Store) {
	now := base()
	s := newScene(now.Add(2 * time.Minute))
	mustCreate(t, st, s)
	u := &login.User{ID: "u_1", OpenID: "o-alice", Name: login.DefaultUserName, LoginCount: 1,
		FirstLoginAt: now, LastLoginAt: now}
	rec := &login.Result{Outcome: login.OutcomeConfirmed, Name: u.Name, LoginCount: 1, HandledAt: now}
	confirmed := *s
	confirmed.Version, confirmed.Status, confirmed.OpenID = 2, login.StatusConfirmed, u.OpenID
	confirmed.ScannedAt, confirmed.ConfirmedAt = now, now

	keys := login.UpdateKeys{SceneID: s.ID, OpenID: u.OpenID, DedupeKey: "k1"}
	mustUpdate(t, st, keys, func(snap login.ReadSet) (login.WriteSet, error) {
		if !reflect.DeepEqual(snap.Scene, s) || snap.User != nil || snap.Record != nil {
			t.Errorf("snapshot = %+v, want the scene only", snap)
		}
		return login.WriteSet{Scene: &confirmed, User: u, Record: rec}, nil
	})
	mustUpdate(t, st, keys, func(snap login.ReadSet) (login.WriteSet, error) {
		if !reflect.DeepEqual(snap.Scene, &confirmed) {
			t.Errorf("scene after update\n got %+v\nwant %+v", snap.Scene, &confirmed)
		}
		if !reflect.DeepEqual(snap.User, u) {
			t.Errorf("user after update\n got %+v\nwant %+v", snap.User, u)
		}
		if !reflect.DeepEqual(snap.Record, rec) {
			t.Errorf("record after update\n got %+v\nwant %+v", snap.Record, rec)
		}
		return login.WriteSet{}, nil
	})
	got, err := st.User(context.Background(), u.OpenID)
	if err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("User() = %+v, %v; want %+v", got, err, u)
	}
	// Keys left empty are not read, even when the records exist.
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(snap login.ReadSet) (login.WriteSet, error) {
		if snap.Scene == nil || snap.User != nil || snap.Record != nil {
			t.Errorf("snapshot with only SceneID = %+v, want the scene only", snap)
		}
		return login.WriteSet{}, nil
	})
}

func testUpdateErrorWritesNothing(t *testing.T, st login.Store) {
	now := base()
	s := newScene(now.Add(2 * time.Minute))
	mustCreate(t, st, s)
	changed := *s
	changed.Version, changed.Status = 2, login.StatusDenied
	domainErr := login.Errorf(login.ECONFLICT, "the scene is pending, not confirmed")
	err := st.Update(context.Background(), login.UpdateKeys{SceneID: s.ID, OpenID: "o-bob", DedupeKey: "k-err"},
		func(login.ReadSet) (login.WriteSet, error) {
			return login.WriteSet{
				Scene:  &changed,
				User:   &login.User{ID: "u_b", OpenID: "o-bob", LoginCount: 1},
				Record: &login.Result{Outcome: login.OutcomeDenied, HandledAt: now},
			}, domainErr
		})
	if !errors.Is(err, domainErr) {
		t.Fatalf("Update returned %v, want the function's own error %v", err, domainErr)
	}
	if got := mustScene(t, st, s.ID); !reflect.DeepEqual(got, s) {
		t.Fatalf("scene changed by a failed update: %+v", got)
	}
	_, err = st.User(context.Background(), "o-bob")
	wantNotFound(t, "user of a failed update", err)
	mustUpdate(t, st, login.UpdateKeys{DedupeKey: "k-err"}, func(snap login.ReadSet) (login.WriteSet, error) {
		if snap.Record != nil {
			t.Errorf("record written by a failed update: %+v", snap.Record)
		}
		return login.WriteSet{}, nil
	})
}

// testUpdateConcurrentCount: every increment of one user's count lands
// exactly once, however the store serialises or retries.
func testUpdateConcurrentCount(t *testing.T, st login.Store) {
	const workers = 50
	now := base()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			errs <- st.Update(context.Background(), login.UpdateKeys{OpenID: "o-counted"},
				func(snap login.ReadSet) (login.WriteSet, error) {
					u := login.User{ID: "u_c", OpenID: "o-counted", FirstLoginAt: now}
					if snap.User != nil {
						u = *snap.User
					}
					u.LoginCount++
					u.LastLoginAt = now
					return login.WriteSet{User: &u}, nil
				})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent update: %v", err)
		}
	}
	u, err := st.User(context.Background(), "o-counted")
	if err != nil {
		t.Fatal(err)
	}
	if u.LoginCount != workers {
		t.Fatalf("login count after %d concurrent increments = %d", workers, u.LoginCount)
	}
}

// testFirstScanWins: many people scan one QR at once; exactly one confirms it
// and exactly one login is counted.
func testFirstScanWins(t *testing.T, st login.Store) {
	const scanners = 20
	now := base()
	s := newScene(now.Add(2 * time.Minute))
	mustCreate(t, st, s)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range scanners {
		openID := fmt.Sprintf("o-scanner-%02d", i)
		wg.Go(func() {
			var won bool
			err := st.Update(context.Background(), login.UpdateKeys{SceneID: s.ID, OpenID: openID},
				func(snap login.ReadSet) (login.WriteSet, error) {
					won = false
					if snap.Scene == nil || snap.Scene.Status != login.StatusPending {
						return login.WriteSet{}, nil
					}
					next := *snap.Scene
					next.Version++
					next.Status, next.OpenID, next.ConfirmedAt = login.StatusConfirmed, openID, now
					won = true
					return login.WriteSet{Scene: &next, User: &login.User{ID: "u_" + openID, OpenID: openID, LoginCount: 1}}, nil
				})
			if err != nil {
				t.Errorf("scan by %s: %v", openID, err)
			}
			if won {
				mu.Lock()
				winners = append(winners, openID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d scans won the scene (%v), want exactly 1", len(winners), winners)
	}
	got := mustScene(t, st, s.ID)
	if got.Status != login.StatusConfirmed || got.OpenID != winners[0] || got.Version != 2 {
		t.Fatalf("scene after the race = %+v, want confirmed by %s at version 2", got, winners[0])
	}
	var counted int64
	for i := range scanners {
		u, err := st.User(context.Background(), fmt.Sprintf("o-scanner-%02d", i))
		if err == nil {
			counted += u.LoginCount
		} else if !errors.Is(err, login.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if counted != 1 {
		t.Fatalf("logins counted = %d, want 1", counted)
	}
}

func testDedupeRecord(t *testing.T, st login.Store) {
	now := base()
	rec := &login.Result{Outcome: login.OutcomeAlreadyUsed, HandledAt: now}
	// A record without a dedupe key is not stored.
	mustUpdate(t, st, login.UpdateKeys{OpenID: "o-x"}, func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Record: rec}, nil
	})
	mustUpdate(t, st, login.UpdateKeys{DedupeKey: "o-x|1|SCAN|s"}, func(snap login.ReadSet) (login.WriteSet, error) {
		if snap.Record != nil {
			t.Errorf("record visible before it was written: %+v", snap.Record)
		}
		return login.WriteSet{Record: rec}, nil
	})
	// Another handle's view: the record is visible to the next Update at once.
	mustUpdate(t, st, login.UpdateKeys{DedupeKey: "o-x|1|SCAN|s"}, func(snap login.ReadSet) (login.WriteSet, error) {
		if !reflect.DeepEqual(snap.Record, rec) {
			t.Errorf("dedupe record = %+v, want %+v", snap.Record, rec)
		}
		return login.WriteSet{}, nil
	})
}

func testDeleteScene(t *testing.T, st login.Store) {
	now := base()
	s := newScene(now.Add(-time.Second)) // already due
	keep := newScene(now.Add(-2 * time.Second))
	mustCreate(t, st, s)
	mustCreate(t, st, keep)
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(snap login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Scene: snap.Scene, DeleteScene: true}, nil
	})
	_, err := st.Scene(context.Background(), s.ID)
	wantNotFound(t, "deleted scene", err)
	ids, err := st.DueScenes(context.Background(), now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{keep.ID}) {
		t.Fatalf("due scenes after delete = %v, want only %s", ids, keep.ID)
	}
	// Deleting a scene that is already gone changes nothing.
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(snap login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Scene: snap.Scene, DeleteScene: true}, nil
	})
}

func testDueScenes(t *testing.T, st login.Store) {
	now := base()
	s3 := newScene(now.Add(-1 * time.Second))
	s1 := newScene(now.Add(-3 * time.Second))
	later := newScene(now.Add(time.Minute))
	s2 := newScene(now.Add(-2 * time.Second))
	atNow := newScene(now)
	for _, s := range []*login.Scene{s3, s1, later, s2, atNow} {
		mustCreate(t, st, s)
	}
	cases := []struct {
		at    time.Time
		limit int
		want  []string
	}{
		{now, 10, []string{s1.ID, s2.ID, s3.ID, atNow.ID}}, // NextCheck == now is due
		{now, 2, []string{s1.ID, s2.ID}},
		{now.Add(-2500 * time.Millisecond), 10, []string{s1.ID}},
		{now.Add(-time.Hour), 10, nil},
		{now.Add(2 * time.Minute), 10, []string{s1.ID, s2.ID, s3.ID, atNow.ID, later.ID}},
	}
	for _, c := range cases {
		ids, err := st.DueScenes(context.Background(), c.at, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("DueScenes(now%+v, %d) = %v, want %v", c.at.Sub(now), c.limit, ids, c.want)
		}
	}
}

// testDueScenesFollowsUpdates: the index moves with the scene's NextCheck.
func testDueScenesFollowsUpdates(t *testing.T, st login.Store) {
	now := base()
	s := newScene(now.Add(-time.Second))
	mustCreate(t, st, s)
	confirmed := *s
	confirmed.Version, confirmed.Status, confirmed.ConfirmedAt = 2, login.StatusConfirmed, now
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Scene: &confirmed}, nil
	})
	for _, c := range []struct {
		at   time.Time
		want []string
	}{
		{now, nil}, // no longer due at its old expiry
		{now.Add(login.CodeTTL), []string{s.ID}},
	} {
		ids, err := st.DueScenes(context.Background(), c.at, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("DueScenes(now%+v) = %v, want %v", c.at.Sub(now), ids, c.want)
		}
	}
}

func testSessions(t *testing.T, st login.Store) {
	ctx := context.Background()
	now := base()
	s := &login.Session{TokenHash: "h1", OpenID: "o-s", UserID: "u_s", CreatedAt: now, ExpiresAt: now.Add(login.SessionTTL)}
	if err := st.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := st.Session(ctx, "h1")
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("Session() = %+v, %v; want %+v", got, err, s)
	}
	if err := st.DeleteSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	_, err = st.Session(ctx, "h1")
	wantNotFound(t, "deleted session", err)
}

func testPurge(t *testing.T, st login.Store) {
	ctx := context.Background()
	now := base()
	sess := &login.Session{TokenHash: "h-purge", OpenID: "o-p", UserID: "u_p", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	rec := &login.Result{Outcome: login.OutcomeExpired, HandledAt: now}
	u := &login.User{ID: "u_p", OpenID: "o-p", LoginCount: 3}
	s := newScene(now.Add(-time.Hour))
	mustCreate(t, st, s)
	mustUpdate(t, st, login.UpdateKeys{OpenID: "o-p", DedupeKey: "k-purge"}, func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{User: u, Record: rec}, nil
	})
	recordPresent := func() bool {
		var present bool
		mustUpdate(t, st, login.UpdateKeys{DedupeKey: "k-purge"}, func(snap login.ReadSet) (login.WriteSet, error) {
			present = snap.Record != nil
			return login.WriteSet{}, nil
		})
		return present
	}

	// Before either is due, Purge keeps both.
	if err := st.Purge(ctx, now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, "h-purge"); err != nil {
		t.Fatalf("session purged early: %v", err)
	}
	if !recordPresent() {
		t.Fatal("callback record purged early")
	}
	// The session is due after an hour, the record after a day.
	if err := st.Purge(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err := st.Session(ctx, "h-purge")
	wantNotFound(t, "purged session", err)
	if !recordPresent() {
		t.Fatal("callback record purged before its day")
	}
	if err := st.Purge(ctx, now.Add(login.DedupeTTL)); err != nil {
		t.Fatal(err)
	}
	if recordPresent() {
		t.Fatal("callback record still present a day after it was handled")
	}
	// Users and scenes are not Purge's business.
	if got, err := st.User(ctx, "o-p"); err != nil || got.LoginCount != 3 {
		t.Fatalf("user after purge = %+v, %v", got, err)
	}
	mustScene(t, st, s.ID)
}

func testPing(t *testing.T, st login.Store) {
	if err := st.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
