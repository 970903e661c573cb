package storage_test

// The operators' part of the stores (login.UserData), run against both: a
// user found by id, the per-user session index, ending sessions, deleting a
// person's data.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
	"wxlogin/storage"
)

var userDataContract = []struct {
	name string
	test func(t *testing.T, st login.Store, ud login.UserData)
}{
	{"UserByID", testUserByID},
	{"SessionIndex", testSessionIndex},
	{"EndSessions", testEndSessions},
	{"DeleteUser", testDeleteUser},
	{"PurgeKeepsIndexRight", testPurgeSessionIndex},
	{"DeleteRacesLogins", testDeleteRacesLogins},
}

func TestUserDataContract(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			for _, c := range userDataContract {
				t.Run(c.name, func(t *testing.T) {
					st := s.open(t)
					ud, ok := st.(login.UserData)
					if !ok {
						t.Fatalf("%T does not implement login.UserData", st)
					}
					c.test(t, st, ud)
				})
			}
		})
	}
}

func newUserID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "u_" + base64.RawURLEncoding.EncodeToString(b)
}

// countLogin writes one more login for openID the way the service does (one
// Update, a new user with a fresh id on the first) and returns the user.
func countLogin(t *testing.T, st login.Store, openID string) *login.User {
	t.Helper()
	var u *login.User
	now := base()
	mustUpdate(t, st, login.UpdateKeys{OpenID: openID}, func(snap login.ReadSet) (login.WriteSet, error) {
		u = &login.User{ID: newUserID(), OpenID: openID, Name: login.DefaultUserName, FirstLoginAt: now}
		if snap.User != nil {
			c := *snap.User
			u = &c
		}
		u.LoginCount++
		u.LastLoginAt = now
		return login.WriteSet{User: u}, nil
	})
	return u
}

func newSession(t *testing.T, st login.Store, u *login.User, hash string, created time.Time) *login.Session {
	t.Helper()
	s := &login.Session{TokenHash: hash, OpenID: u.OpenID, UserID: u.ID, CreatedAt: created, ExpiresAt: created.Add(login.SessionTTL)}
	if err := st.CreateSession(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func sessionHashes(t *testing.T, ud login.UserData, userID string) []string {
	t.Helper()
	ss, err := ud.UserSessions(context.Background(), userID)
	if err != nil {
		t.Fatalf("UserSessions(%s): %v", userID, err)
	}
	var out []string
	for _, s := range ss {
		if s.UserID != userID {
			t.Errorf("UserSessions(%s) lists a session of %s", userID, s.UserID)
		}
		out = append(out, s.TokenHash)
	}
	slices.Sort(out)
	return out
}

// checkpoint moves bbolt's journal into the file, so a test sees both the
// overlay and bbolt at work; Redis has nothing to do.
func checkpoint(t *testing.T, st login.Store) {
	t.Helper()
	if b, ok := st.(*storage.Bolt); ok {
		if err := b.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func testUserByID(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	alice := countLogin(t, st, "o-alice")
	checkpoint(t, st)
	bob := countLogin(t, st, "o-bob")
	for _, want := range []*login.User{alice, bob} {
		got, err := ud.UserByID(ctx, want.ID)
		if err != nil || got.OpenID != want.OpenID || got.LoginCount != 1 {
			t.Fatalf("UserByID(%s) = %+v, %v; want %s with 1 login", want.ID, got, err, want.OpenID)
		}
	}
	again := countLogin(t, st, "o-alice")
	if again.ID != alice.ID {
		t.Fatalf("a second login changed the id: %s → %s", alice.ID, again.ID)
	}
	if got, err := ud.UserByID(ctx, alice.ID); err != nil || got.LoginCount != 2 {
		t.Fatalf("UserByID after a second login = %+v, %v", got, err)
	}
	_, err := ud.UserByID(ctx, newUserID())
	wantNotFound(t, "unknown user id", err)
}

func testSessionIndex(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	now := base()
	alice, bob := countLogin(t, st, "o-alice"), countLogin(t, st, "o-bob")
	newSession(t, st, alice, "ha1", now)
	newSession(t, st, bob, "hb1", now)
	checkpoint(t, st) // some in bbolt, some in the overlay
	newSession(t, st, alice, "ha2", now)
	newSession(t, st, alice, "ha3", now)
	if err := st.DeleteSession(ctx, "ha1"); err != nil {
		t.Fatal(err)
	}
	if got := sessionHashes(t, ud, alice.ID); !slices.Equal(got, []string{"ha2", "ha3"}) {
		t.Fatalf("alice's sessions = %v, want [ha2 ha3]", got)
	}
	if got := sessionHashes(t, ud, bob.ID); !slices.Equal(got, []string{"hb1"}) {
		t.Fatalf("bob's sessions = %v, want [hb1]", got)
	}
	if got := sessionHashes(t, ud, newUserID()); len(got) != 0 {
		t.Fatalf("an unknown user has sessions %v", got)
	}
}

func testEndSessions(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	now := base()
	alice, bob := countLogin(t, st, "o-alice"), countLogin(t, st, "o-bob")
	newSession(t, st, alice, "ha1", now)
	checkpoint(t, st)
	newSession(t, st, alice, "ha2", now)
	newSession(t, st, bob, "hb1", now)
	n, err := ud.EndSessions(ctx, alice.ID)
	if err != nil || n != 2 {
		t.Fatalf("EndSessions = %d, %v; want 2", n, err)
	}
	for _, h := range []string{"ha1", "ha2"} {
		_, err := st.Session(ctx, h)
		wantNotFound(t, "ended session "+h, err)
	}
	if _, err := st.Session(ctx, "hb1"); err != nil {
		t.Fatalf("bob's session went too: %v", err)
	}
	if n, err := ud.EndSessions(ctx, alice.ID); err != nil || n != 0 {
		t.Fatalf("second EndSessions = %d, %v; want 0", n, err)
	}
	// The user stays; only the sessions went.
	if u, err := ud.UserByID(ctx, alice.ID); err != nil || u.LoginCount != 1 {
		t.Fatalf("user after EndSessions = %+v, %v", u, err)
	}
	// Purge must not trip over sessions that were ended.
	if err := st.Purge(ctx, now.Add(login.SessionTTL+time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func testDeleteUser(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	now := base()
	alice, bob := countLogin(t, st, "o-alice"), countLogin(t, st, "o-bob")
	alice = countLogin(t, st, "o-alice")
	newSession(t, st, alice, "ha1", now)
	newSession(t, st, bob, "hb1", now)
	// A scene alice scanned (her one-time code in flight), one bob
	// scanned, one nobody has scanned yet.
	scanned := func(openID string) *login.Scene {
		s := newScene(now.Add(2 * time.Minute))
		mustCreate(t, st, s)
		mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(snap login.ReadSet) (login.WriteSet, error) {
			next := *snap.Scene
			next.Version++
			next.Status, next.OpenID, next.ScannedAt, next.ConfirmedAt = login.StatusConfirmed, openID, now, now
			return login.WriteSet{Scene: &next}, nil
		})
		return s
	}
	aliceScene, bobScene := scanned("o-alice"), scanned("o-bob")
	checkpoint(t, st)
	newSession(t, st, alice, "ha2", now)
	aliceScene2 := scanned("o-alice")
	pending := newScene(now.Add(2 * time.Minute))
	mustCreate(t, st, pending)

	erased, err := ud.DeleteUser(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if erased.Sessions != 2 || erased.Scenes != 2 {
		t.Fatalf("DeleteUser erased %+v, want 2 sessions and 2 scenes", erased)
	}
	_, err = st.User(ctx, "o-alice")
	wantNotFound(t, "deleted user by openid", err)
	_, err = ud.UserByID(ctx, alice.ID)
	wantNotFound(t, "deleted user by id", err)
	for _, h := range []string{"ha1", "ha2"} {
		_, err := st.Session(ctx, h)
		wantNotFound(t, "session "+h, err)
	}
	for _, s := range []*login.Scene{aliceScene, aliceScene2} {
		_, err := st.Scene(ctx, s.ID)
		wantNotFound(t, "alice's scene", err)
	}
	due, err := st.DueScenes(ctx, now.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(due, aliceScene.ID) || slices.Contains(due, aliceScene2.ID) {
		t.Fatalf("deleted scenes still in the expiry index: %v", due)
	}
	// Everything of others stays.
	mustScene(t, st, bobScene.ID)
	mustScene(t, st, pending.ID)
	if _, err := st.Session(ctx, "hb1"); err != nil {
		t.Fatalf("bob's session: %v", err)
	}
	if u, err := ud.UserByID(ctx, bob.ID); err != nil || u.LoginCount != 1 {
		t.Fatalf("bob = %+v, %v", u, err)
	}
	// A second delete finds nothing; a later login starts over.
	_, err = ud.DeleteUser(ctx, alice.ID)
	wantNotFound(t, "second delete", err)
	fresh := countLogin(t, st, "o-alice")
	if fresh.ID == alice.ID || fresh.LoginCount != 1 {
		t.Fatalf("login after delete = %+v, want a new id and count 1", fresh)
	}
	if _, err := ud.UserByID(ctx, alice.ID); err == nil {
		t.Fatal("the old id finds the new user")
	}
}

func testPurgeSessionIndex(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	now := base()
	alice := countLogin(t, st, "o-alice")
	newSession(t, st, alice, "old", now.Add(-login.SessionTTL-time.Minute))
	newSession(t, st, alice, "new", now)
	if err := st.Purge(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got := sessionHashes(t, ud, alice.ID); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("sessions after purge = %v, want [new]", got)
	}
}

// TestBoltUpgradesOldFormat opens a file of format 1 (no indexes, no
// format key, as earlier builds wrote it) and finds its users by id.
func TestBoltUpgradesOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	now := base()
	u := login.User{ID: newUserID(), OpenID: "o-old", Name: login.DefaultUserName, LoginCount: 7, FirstLoginAt: now, LastLoginAt: now}
	sess := login.Session{TokenHash: "h-old", OpenID: u.OpenID, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	writeRawBolt(t, path, map[string]map[string]any{
		"users":    {u.OpenID: u},
		"sessions": {sess.TokenHash: sess},
	}, 0)
	st, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.UserByID(context.Background(), u.ID)
	if err != nil || got.LoginCount != 7 {
		t.Fatalf("UserByID on an upgraded file = %+v, %v", got, err)
	}
	if got := sessionHashes(t, st, u.ID); !slices.Equal(got, []string{"h-old"}) {
		t.Fatalf("sessions on an upgraded file = %v", got)
	}
}

func TestBoltRefusesNewerFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	writeRawBolt(t, path, nil, storage.FormatVersion+1)
	_, err := storage.OpenBolt(path)
	if err == nil || !strings.Contains(err.Error(), "newer wxlogin") {
		t.Fatalf("OpenBolt on a newer file: err = %v, want a refusal naming the newer version", err)
	}
}

// writeRawBolt writes a bbolt file by hand: buckets of JSON records and,
// unless format is 0, a format version.
func writeRawBolt(t *testing.T, path string, buckets map[string]map[string]any, format uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for name, recs := range buckets {
			b, err := tx.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			for k, v := range recs {
				raw, _ := json.Marshal(v)
				if err := b.Put([]byte(k), raw); err != nil {
					return err
				}
			}
		}
		if format == 0 {
			return nil
		}
		m, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], format)
		return m.Put([]byte("format"), v[:])
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRedisIndexesEarlierData finds users and sessions written before the
// indexes existed (keys set by hand, as an earlier build left them).
func TestRedisIndexesEarlierData(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix := newTestRedisStore(t)
	now := base()
	u := login.User{ID: newUserID(), OpenID: "o-early", LoginCount: 4, FirstLoginAt: now, LastLoginAt: now}
	sess := login.Session{TokenHash: "h-early", OpenID: u.OpenID, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	ru, _ := json.Marshal(u)
	rs, _ := json.Marshal(sess)
	if err := rdb.Set(ctx, prefix+"user:"+u.OpenID, ru, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, prefix+"sess:"+sess.TokenHash, rs, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := st.UserByID(ctx, u.ID)
	if err != nil || got.LoginCount != 4 {
		t.Fatalf("UserByID of earlier data = %+v, %v", got, err)
	}
	if got := sessionHashes(t, st, u.ID); !slices.Equal(got, []string{"h-early"}) {
		t.Fatalf("sessions of earlier data = %v", got)
	}
	if ttl := rdb.PTTL(ctx, prefix+"usess:"+u.ID).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("the session set lives %v, want about an hour (its session's life)", ttl)
	}
}

// testDeleteRacesLogins deletes a person while they keep logging in and
// getting sessions: whatever the interleaving, the store ends consistent —
// the user found by openid is found by its id, every session left belongs
// to that user, and a count only restarts after a delete.
func testDeleteRacesLogins(t *testing.T, st login.Store, ud login.UserData) {
	ctx := context.Background()
	const openID = "o-racer"
	first := countLogin(t, st, openID)
	done := make(chan struct{})
	var deletes int
	go func() {
		defer close(done)
		for range 30 {
			u, err := st.User(ctx, openID)
			if err != nil {
				continue
			}
			if _, err := ud.DeleteUser(ctx, u.ID); err == nil {
				deletes++
			} else if login.ErrorCode(err) != login.ENOTFOUND {
				t.Errorf("delete: %v", err)
			}
		}
	}()
	for i := range 60 {
		u := countLogin(t, st, openID)
		newSession(t, st, u, fmt.Sprintf("race-%d", i), base())
	}
	<-done
	if deletes == 0 {
		t.Log("no delete found the user this time; the check below still holds")
	}
	u, err := st.User(ctx, openID)
	if errors.Is(err, login.ErrNotFound) {
		u = countLogin(t, st, openID) // the last delete came after the last login
		if u.LoginCount != 1 {
			t.Fatalf("a login after a delete counts %d, want 1", u.LoginCount)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	byID, err := ud.UserByID(ctx, u.ID)
	if err != nil || byID.OpenID != openID || byID.LoginCount != u.LoginCount {
		t.Fatalf("UserByID(%s) = %+v, %v; want the user found by openid", u.ID, byID, err)
	}
	if deletes > 0 && u.ID == first.ID {
		t.Fatalf("%d deletes went through but the first user's id %s survives", deletes, first.ID)
	}
	ss, err := ud.UserSessions(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.UserID != u.ID {
			t.Fatalf("session %s of %s listed for %s", s.TokenHash, s.UserID, u.ID)
		}
	}
	if _, err := ud.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.User(ctx, openID); !errors.Is(err, login.ErrNotFound) {
		t.Fatalf("after the last delete: %v", err)
	}
}
