package storage_test

// What only the Redis store has to show: several instances on one Redis,
// key lifetimes, and storage errors turned into 503s.

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"wxlogin/internal/redistest"
	"wxlogin/login"
	"wxlogin/storage"
)

// TestRedisUpdateAcrossInstances: two instances (two clients, one prefix)
// count logins of one user concurrently; every login lands exactly once.
func TestRedisUpdateAcrossInstances(t *testing.T) {
	a, _, prefix := newTestRedisStore(t)
	other := newTestRedisClient(t)
	b := storage.NewRedis(other, prefix)

	const perInstance = 30
	now := base()
	var wg sync.WaitGroup
	for _, st := range []*storage.Redis{a, b} {
		for range perInstance {
			wg.Go(func() {
				err := st.Update(context.Background(), login.UpdateKeys{OpenID: "o-shared"},
					func(snap login.ReadSet) (login.WriteSet, error) {
						u := login.User{ID: "u_shared", OpenID: "o-shared", FirstLoginAt: now}
						if snap.User != nil {
							u = *snap.User
						}
						u.LoginCount++
						return login.WriteSet{User: &u}, nil
					})
				if err != nil {
					t.Errorf("update: %v", err)
				}
			})
		}
	}
	wg.Wait()
	u, err := b.User(context.Background(), "o-shared")
	if err != nil {
		t.Fatal(err)
	}
	if u.LoginCount != 2*perInstance {
		t.Fatalf("count = %d after %d increments from two instances", u.LoginCount, 2*perInstance)
	}
}

// TestRedisKeyLifetimes: records expire in Redis no earlier than the service
// may still read them; users never expire.
func TestRedisKeyLifetimes(t *testing.T) {
	st, rdb, prefix := newTestRedisStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	s := newScene(now.Add(2 * time.Minute))
	mustCreate(t, st, s)
	rec := &login.Result{Outcome: login.OutcomeConfirmed, HandledAt: now}
	mustUpdate(t, st, login.UpdateKeys{OpenID: "o-ttl", DedupeKey: "k-ttl"}, func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{User: &login.User{ID: "u_ttl", OpenID: "o-ttl", LoginCount: 1}, Record: rec}, nil
	})
	sess := &login.Session{TokenHash: "h-ttl", OpenID: "o-ttl", CreatedAt: now, ExpiresAt: now.Add(login.SessionTTL)}
	if err := st.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		key      string
		min, max time.Duration // -1: no expiry
	}{
		{prefix + "scene:" + s.ID, 2*time.Minute + login.FinishedTTL - 5*time.Second, 2*time.Minute + login.FinishedTTL},
		{prefix + "cb:k-ttl", login.DedupeTTL - 5*time.Second, login.DedupeTTL},
		{prefix + "sess:h-ttl", login.SessionTTL - 5*time.Second, login.SessionTTL},
		{prefix + "user:o-ttl", -1, -1},
	}
	for _, c := range cases {
		ttl, err := rdb.PTTL(ctx, c.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if c.min == -1 {
			if ttl != -1 {
				t.Errorf("%s expires in %s; it must be kept", c.key, ttl)
			}
			continue
		}
		if ttl < c.min || ttl > c.max {
			t.Errorf("%s expires in %s, want within [%s, %s]", c.key, ttl, c.min, c.max)
		}
	}

	// Confirming moves the scene's lifetime to its code's life plus the readable window.
	confirmed := *s
	confirmed.Version, confirmed.Status, confirmed.ConfirmedAt = 2, login.StatusConfirmed, now
	mustUpdate(t, st, login.UpdateKeys{SceneID: s.ID}, func(login.ReadSet) (login.WriteSet, error) {
		return login.WriteSet{Scene: &confirmed}, nil
	})
	ttl, err := rdb.PTTL(ctx, prefix+"scene:"+s.ID).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := login.CodeTTL + login.FinishedTTL; ttl < want-5*time.Second || ttl > want {
		t.Errorf("confirmed scene expires in %s, want about %s", ttl, want)
	}
}

// TestRedisDueScenesDropsVanishedScenes: a scene whose key expired while no
// sweeper ran leaves an index entry; DueScenes must not list it forever.
func TestRedisDueScenesDropsVanishedScenes(t *testing.T) {
	st, rdb, prefix := newTestRedisStore(t)
	ctx := context.Background()
	now := base()
	gone, kept := newScene(now.Add(-2*time.Second)), newScene(now.Add(-time.Second))
	mustCreate(t, st, gone)
	mustCreate(t, st, kept)
	if err := rdb.Del(ctx, prefix+"scene:"+gone.ID).Err(); err != nil { // what the TTL does
		t.Fatal(err)
	}
	ids, err := st.DueScenes(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{kept.ID}) {
		t.Fatalf("due = %v, want only %s", ids, kept.ID)
	}
	left, err := rdb.ZRange(ctx, prefix+"due:scenes", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{kept.ID}) {
		t.Fatalf("index after DueScenes = %v, want only %s", left, kept.ID)
	}
}

// TestRedisUnavailable: with Redis unreachable, every operation fails with
// the unavailable code (503) and the update function is never run on a
// half-read snapshot.
func TestRedisUnavailable(t *testing.T) {
	rdb, err := storage.NewRedisClient("redis://" + redistest.DeadAddr(t) + "/0?max_retries=-1&dial_timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewRedis(rdb, "wxlogin-test:down:")
	defer st.Close()
	ctx := context.Background()
	now := base()

	ops := map[string]func() error{
		"Ping":        func() error { return st.Ping(ctx) },
		"CreateScene": func() error { return st.CreateScene(ctx, newScene(now)) },
		"Scene":       func() error { _, err := st.Scene(ctx, "scene-0000000000000000"); return err },
		"User":        func() error { _, err := st.User(ctx, "o"); return err },
		"Update": func() error {
			return st.Update(ctx, login.UpdateKeys{SceneID: "scene-0000000000000000", OpenID: "o"},
				func(login.ReadSet) (login.WriteSet, error) {
					t.Error("update function ran without a snapshot")
					return login.WriteSet{}, nil
				})
		},
		"DueScenes":     func() error { _, err := st.DueScenes(ctx, now, 10); return err },
		"CreateSession": func() error { return st.CreateSession(ctx, &login.Session{TokenHash: "h", ExpiresAt: now}) },
		"Session":       func() error { _, err := st.Session(ctx, "h"); return err },
		"DeleteSession": func() error { return st.DeleteSession(ctx, "h") },
		"Purge":         func() error { return st.Purge(ctx, now) },
	}
	for name, op := range ops {
		err := op()
		if login.ErrorCode(err) != login.EUNAVAILABLE {
			t.Errorf("%s with Redis down: err = %v, want code %q", name, err, login.EUNAVAILABLE)
		}
	}
}
