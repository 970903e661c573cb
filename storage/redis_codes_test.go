package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

// TestRedisLoginCodeAcrossInstances: two instances (two clients on one
// prefix) claiming the same code at once: exactly one gets it, and both see
// the winner.
func TestRedisLoginCodeAcrossInstances(t *testing.T) {
	a, _, prefix := newTestRedisStore(t)
	b := storage.NewRedis(newTestRedisClient(t), prefix)
	exp := base().Add(2 * time.Minute)
	for round := range 20 {
		code := []byte("100000")
		code[5] = byte('0' + round%10)
		code[4] = byte('0' + round/10)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []string
		for _, st := range []*storage.Redis{a, b, a, b} {
			wg.Go(func() {
				s := sceneWithCode(exp, string(code))
				err := st.CreateScene(context.Background(), s)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, s.ID)
					mu.Unlock()
				case !errors.Is(err, login.ErrLoginCodeTaken):
					t.Errorf("claim: %v", err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("code %s: %d winners %v", code, len(won), won)
		}
		for _, st := range []*storage.Redis{a, b} {
			if id, err := st.SceneByLoginCode(context.Background(), string(code)); err != nil || id != won[0] {
				t.Fatalf("instance sees %q, %v; want %s", id, err, won[0])
			}
		}
	}
}

// TestRedisCodeKeyLifetimes: a code's key lives as long as its scene waits
// (so a code cannot outlive the wait even if no sweeper runs); miss and
// lockout keys expire once they no longer matter.
func TestRedisCodeKeyLifetimes(t *testing.T) {
	st, rdb, prefix := newTestRedisStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	s := sceneWithCode(now.Add(5*time.Minute), "246810")
	mustCreate(t, st, s)
	ttl := rdb.PTTL(ctx, prefix+"code:246810").Val()
	if ttl < 4*time.Minute || ttl > 5*time.Minute {
		t.Fatalf("code key TTL %v, want the scene's 5-minute wait", ttl)
	}
	for i := range 5 {
		if _, err := st.RecordCodeMiss(ctx, "oTTL", now.Add(time.Duration(i)*time.Second), testPolicy); err != nil {
			t.Fatal(err)
		}
	}
	if n := rdb.Exists(ctx, prefix+"codemiss:oTTL").Val(); n != 0 {
		t.Fatalf("misses kept after the lockout began")
	}
	lock := rdb.PTTL(ctx, prefix+"codelock:oTTL").Val()
	if lock < testPolicy.Lockout || lock > testPolicy.Lockout+2*time.Minute {
		t.Fatalf("lockout key TTL %v", lock)
	}
	if _, err := st.RecordCodeMiss(ctx, "oOnce", now, testPolicy); err != nil {
		t.Fatal(err)
	}
	if m := rdb.PTTL(ctx, prefix+"codemiss:oOnce").Val(); m < testPolicy.Window || m > testPolicy.Window+2*time.Minute {
		t.Fatalf("miss key TTL %v", m)
	}
}
