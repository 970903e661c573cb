package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
	"wxlogin/storage"
)

// The login-code half of the store contract (login.LoginCodeStore and the
// code claim in CreateScene), run against every store.
var codeContract = []struct {
	name string
	test func(t *testing.T, st login.Store)
}{
	{"ClaimIsUnique", testCodeClaimIsUnique},
	{"EndingTheSceneReleasesTheCode", testCodeReleasedWhenSceneEnds},
	{"ConfirmModeKeepsTheCode", testCodeKeptWhileScanned},
	{"DeleteReleasesTheCode", testCodeReleasedOnDelete},
	{"ConcurrentClaimsOneWinner", testCodeConcurrentClaims},
	{"MissesLockOut", testMissesLockOut},
	{"MissesOutsideTheWindowDoNotCount", testMissesWindow},
	{"MissRecordsArePurged", testMissesPurged},
}

func TestLoginCodeContract(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			for _, c := range codeContract {
				t.Run(c.name, func(t *testing.T) {
					c.test(t, s.open(t))
				})
			}
		})
	}
}

func sceneWithCode(exp time.Time, code string) *login.Scene {
	s := newScene(exp)
	s.LoginCode = code
	return s
}

func wantHolder(t *testing.T, st login.Store, code, want string) {
	t.Helper()
	got, err := st.SceneByLoginCode(context.Background(), code)
	if want == "" {
		wantNotFound(t, "code "+code, err)
		return
	}
	if err != nil || got != want {
		t.Fatalf("SceneByLoginCode(%s) = %q, %v; want %q", code, got, err, want)
	}
}

func testCodeClaimIsUnique(t *testing.T, st login.Store) {
	ctx := context.Background()
	exp := base().Add(2 * time.Minute)
	a := sceneWithCode(exp, "123456")
	mustCreate(t, st, a)
	wantHolder(t, st, "123456", a.ID)
	b := sceneWithCode(exp, "123456")
	if err := st.CreateScene(ctx, b); !errors.Is(err, login.ErrLoginCodeTaken) {
		t.Fatalf("second claim of a held code: err = %v, want ErrLoginCodeTaken", err)
	}
	_, err := st.Scene(ctx, b.ID)
	wantNotFound(t, "scene refused for its code", err) // nothing stored
	wantHolder(t, st, "123456", a.ID)
	// Another code is free; a scene without a code claims nothing.
	mustCreate(t, st, sceneWithCode(exp, "654321"))
	mustCreate(t, st, newScene(exp))
	wantHolder(t, st, "000000", "")
}

// setStatus moves a scene to status st (the service's decisions, reduced
// to what the store sees).
func setStatus(t *testing.T, st login.Store, id string, status login.Status) {
	t.Helper()
	mustUpdate(t, st, login.UpdateKeys{SceneID: id}, func(rs login.ReadSet) (login.WriteSet, error) {
		next := *rs.Scene
		next.Version++
		next.Status = status
		now := base()
		switch status {
		case login.StatusConfirmed:
			next.ConfirmedAt = now
		case login.StatusScanned:
			next.ScannedAt = now
		default:
			next.FinishedAt = now
		}
		return login.WriteSet{Scene: &next}, nil
	})
}

func testCodeReleasedWhenSceneEnds(t *testing.T, st login.Store) {
	exp := base().Add(2 * time.Minute)
	for i, end := range []login.Status{login.StatusConfirmed, login.StatusDenied, login.StatusExpired} {
		code := []string{"111111", "222222", "333333"}[i]
		s := sceneWithCode(exp, code)
		mustCreate(t, st, s)
		setStatus(t, st, s.ID, end)
		wantHolder(t, st, code, "")
		next := sceneWithCode(exp, code)
		mustCreate(t, st, next) // free again
		wantHolder(t, st, code, next.ID)
	}
}

func testCodeKeptWhileScanned(t *testing.T, st login.Store) {
	s := sceneWithCode(base().Add(2*time.Minute), "424242")
	mustCreate(t, st, s)
	setStatus(t, st, s.ID, login.StatusScanned)
	wantHolder(t, st, "424242", s.ID)
	setStatus(t, st, s.ID, login.StatusConfirmed)
	wantHolder(t, st, "424242", "")
}

func testCodeReleasedOnDelete(t *testing.T, st login.Store) {
	s := sceneWithCode(base().Add(2*time.Minute), "777777")
	mustCreate(t, st, s)
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(rs login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Scene: rs.Scene, DeleteScene: true}, nil
	})
	wantHolder(t, st, "777777", "")
}

func testCodeConcurrentClaims(t *testing.T, st login.Store) {
	exp := base().Add(2 * time.Minute)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	ids := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sceneWithCode(exp, "999999")
			ids[i] = s.ID
			errs[i] = st.CreateScene(context.Background(), s)
		}()
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner == "":
			winner = ids[i]
		case err == nil:
			t.Fatalf("two scenes hold code 999999: %s and %s", winner, ids[i])
		case !errors.Is(err, login.ErrLoginCodeTaken):
			t.Fatalf("claim: %v", err)
		}
	}
	if winner == "" {
		t.Fatal("nobody got the code")
	}
	wantHolder(t, st, "999999", winner)
}

var testPolicy = login.MissPolicy{Limit: 5, Window: 10 * time.Minute, Lockout: 10 * time.Minute}

func miss(t *testing.T, st login.Store, openID string, at time.Time) time.Time {
	t.Helper()
	until, err := st.RecordCodeMiss(context.Background(), openID, at, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	return until
}

func lockedUntil(t *testing.T, st login.Store, openID string, now time.Time) time.Time {
	t.Helper()
	until, err := st.CodeLockedUntil(context.Background(), openID, now)
	if err != nil {
		t.Fatal(err)
	}
	return until
}

func testMissesLockOut(t *testing.T, st login.Store) {
	now := base()
	for i := range 4 {
		if until := miss(t, st, "oGuess", now.Add(time.Duration(i)*time.Second)); !until.IsZero() {
			t.Fatalf("miss %d locked out until %v", i+1, until)
		}
	}
	if u := lockedUntil(t, st, "oGuess", now.Add(4*time.Second)); !u.IsZero() {
		t.Fatalf("locked after 4 misses: %v", u)
	}
	fifth := now.Add(5 * time.Second)
	until := miss(t, st, "oGuess", fifth)
	if !until.Equal(fifth.Add(testPolicy.Lockout)) {
		t.Fatalf("fifth miss: locked until %v, want %v", until, fifth.Add(testPolicy.Lockout))
	}
	if u := lockedUntil(t, st, "oGuess", fifth.Add(time.Minute)); !u.Equal(until) {
		t.Fatalf("lockout read back as %v, want %v", u, until)
	}
	// Someone else is not affected.
	if u := lockedUntil(t, st, "oOther", fifth); !u.IsZero() {
		t.Fatalf("another sender locked: %v", u)
	}
	// Misses while locked out neither count nor extend the lockout.
	if u := miss(t, st, "oGuess", fifth.Add(time.Minute)); !u.IsZero() {
		t.Fatalf("miss while locked: %v", u)
	}
	if u := lockedUntil(t, st, "oGuess", fifth.Add(time.Minute)); !u.Equal(until) {
		t.Fatalf("lockout moved to %v", u)
	}
	// After the lockout the sender starts afresh.
	after := until
	if u := lockedUntil(t, st, "oGuess", after); !u.IsZero() {
		t.Fatalf("still locked at the lockout's end: %v", u)
	}
	for i := range 4 {
		if u := miss(t, st, "oGuess", after.Add(time.Duration(i)*time.Second)); !u.IsZero() {
			t.Fatalf("miss %d after the lockout locked again", i+1)
		}
	}
}

func testMissesWindow(t *testing.T, st login.Store) {
	now := base()
	// Four misses, then the fifth just after the first left the window.
	for i := range 4 {
		miss(t, st, "oSlow", now.Add(time.Duration(i)*time.Minute))
	}
	if u := miss(t, st, "oSlow", now.Add(testPolicy.Window+time.Second)); !u.IsZero() {
		t.Fatalf("a miss outside the window counted: locked until %v", u)
	}
	if u := miss(t, st, "oSlow", now.Add(testPolicy.Window+2*time.Second)); u.IsZero() {
		t.Fatal("five misses within the window did not lock out")
	}
}

func testMissesPurged(t *testing.T, st login.Store) {
	b, ok := st.(*storage.Bolt)
	if !ok {
		t.Skip("Redis keeps miss records under TTLs; nothing to purge") // see TestRedisCodeKeyLifetimes
	}
	now := base()
	miss(t, st, "oOnce", now)
	if err := b.Purge(context.Background(), now.Add(testPolicy.Window-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := codeMissRecords(t, b); n != 1 {
		t.Fatalf("%d miss records before their time, want 1", n)
	}
	if err := b.Purge(context.Background(), now.Add(testPolicy.Window+time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := codeMissRecords(t, b); n != 0 {
		t.Fatalf("%d miss records left after purge", n)
	}
}

// codeMissRecords counts the miss records in the bbolt file (after a checkpoint).
func codeMissRecords(t *testing.T, b *storage.Bolt) int {
	t.Helper()
	if err := b.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := b.DB().View(func(tx *bolt.Tx) error {
		for _, name := range []string{"code_misses", "code_misses_due"} {
			if err := tx.Bucket([]byte(name)).ForEach(func(_, _ []byte) error { n++; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n / 2
}
