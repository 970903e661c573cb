package storage_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"wxlogin/storage"
)

// TestRedisBindQuery: a signed callback query is bound to the first body seen
// by any instance; the same body is accepted again, another is not; the key
// lives under the prefix until the query is no longer fresh.
func TestRedisBindQuery(t *testing.T) {
	a, rdb, prefix := newTestRedisStore(t)
	b := storage.NewRedis(newTestRedisClient(t), prefix)
	ctx := context.Background()
	until := time.Now().Add(5 * time.Minute)

	// Ten bodies race for one query on two instances: exactly one wins, and
	// every instance agrees which.
	var (
		mu      sync.Mutex
		winners []int
		wg      sync.WaitGroup
	)
	for i := range 10 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			ok, err := st.BindQuery(ctx, "q-race", sha256.Sum256([]byte(fmt.Sprint("body ", i))), until)
			if err != nil {
				t.Errorf("bind: %v", err)
			}
			if ok {
				mu.Lock()
				winners = append(winners, i)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("bodies bound to one query: %v, want exactly one", winners)
	}
	winner := sha256.Sum256([]byte(fmt.Sprint("body ", winners[0])))
	for _, st := range []*storage.Redis{a, b} {
		if ok, err := st.BindQuery(ctx, "q-race", winner, until); !ok || err != nil {
			t.Fatalf("the winning body again (a retry): %v %v", ok, err)
		}
	}

	ttl, err := rdb.TTL(ctx, prefix+"cbq:q-race").Result()
	if err != nil || ttl < 4*time.Minute || ttl > 5*time.Minute {
		t.Fatalf("binding TTL %v (%v), want about 5 minutes", ttl, err)
	}
}

// TestRedisBindQueryUnavailable: with Redis unreachable the binding fails as
// unavailable (WeChat gets a 503 and retries), never as "bound".
func TestRedisBindQueryUnavailable(t *testing.T) {
	rdb, err := storage.NewRedisClient("redis://127.0.0.1:1/0") // nobody listens there
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewRedis(rdb, "wxlogin-test-unreachable:")
	defer st.Close()
	ok, err := st.BindQuery(context.Background(), "q", sha256.Sum256(nil), time.Now().Add(time.Minute))
	if ok || err == nil {
		t.Fatalf("bind on a closed client: %v %v", ok, err)
	}
}
