package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

func TestWebAuthStates(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Run("TakeOnce", func(t *testing.T) { testWebAuthTakeOnce(t, s.open(t)) })
			t.Run("ConcurrentTakersOneWins", func(t *testing.T) { testWebAuthConcurrentTake(t, s.open(t)) })
			t.Run("UnknownAndDuplicate", func(t *testing.T) { testWebAuthUnknownAndDuplicate(t, s.open(t)) })
		})
	}
}

func webAuthState(sceneID string) *login.WebAuthState {
	return &login.WebAuthState{SceneID: sceneID, ReturnTo: "/after?x=1#y",
		BindingHash: []byte("0123456789abcdef0123456789abcdef"), ExpiresAt: base().Add(2 * time.Minute)}
}

func testWebAuthTakeOnce(t *testing.T, st login.Store) {
	ctx := context.Background()
	want := webAuthState("scene-one")
	if err := st.PutWebAuthState(ctx, "stateAAAA", want); err != nil {
		t.Fatal(err)
	}
	got, used, err := st.TakeWebAuthState(ctx, "stateAAAA")
	if err != nil || used {
		t.Fatalf("first take: used=%v err=%v; want unused", used, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("first take: %+v; want %+v", got, want)
	}
	got, used, err = st.TakeWebAuthState(ctx, "stateAAAA")
	if err != nil || !used || got == nil || got.SceneID != want.SceneID {
		t.Fatalf("second take: %+v used=%v err=%v; want the state, used", got, used, err)
	}
}

func testWebAuthConcurrentTake(t *testing.T, st login.Store) {
	ctx := context.Background()
	const states, takers = 5, 8
	for i := range states {
		if err := st.PutWebAuthState(ctx, fmt.Sprint("race", i), webAuthState(fmt.Sprint("scene", i))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	winners := map[string]int{}
	var wg sync.WaitGroup
	for i := range states {
		for range takers {
			wg.Go(func() {
				state := fmt.Sprint("race", i)
				_, used, err := st.TakeWebAuthState(ctx, state)
				if err != nil {
					t.Error(err)
					return
				}
				if !used {
					mu.Lock()
					winners[state]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for i := range states {
		if n := winners[fmt.Sprint("race", i)]; n != 1 {
			t.Errorf("state %d taken unused by %d takers; want exactly 1", i, n)
		}
	}
}

func testWebAuthUnknownAndDuplicate(t *testing.T, st login.Store) {
	ctx := context.Background()
	if _, _, err := st.TakeWebAuthState(ctx, "neverPut"); !errors.Is(err, login.ErrNotFound) {
		t.Errorf("unknown state: %v; want ErrNotFound", err)
	}
	if err := st.PutWebAuthState(ctx, "dup", webAuthState("a")); err != nil {
		t.Fatal(err)
	}
	err := st.PutWebAuthState(ctx, "dup", webAuthState("b"))
	if login.ErrorCode(err) != login.ECONFLICT {
		t.Errorf("second put of one state: %v; want a conflict", err)
	}
	got, _, err := st.TakeWebAuthState(ctx, "dup")
	if err != nil || got.SceneID != "a" {
		t.Errorf("after a refused put the state is %+v (%v); want the first", got, err)
	}
}

// TestBoltWebAuthPurge: bbolt has no TTL; expired states go at the next Put.
func TestBoltWebAuthPurge(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wxlogin.db")
	st, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	old := webAuthState("old")
	old.ExpiresAt = time.Now().Add(-time.Second)
	if err := st.PutWebAuthState(ctx, "old", old); err != nil {
		t.Fatal(err)
	}
	if err := st.PutWebAuthState(ctx, "new", webAuthState("new")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.TakeWebAuthState(ctx, "old"); !errors.Is(err, login.ErrNotFound) {
		t.Errorf("expired state after the next put: %v; want it purged", err)
	}
	// States survive a restart (the browser may come back to a restarted instance).
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, used, err := st.TakeWebAuthState(ctx, "new"); err != nil || used || got.SceneID != "new" {
		t.Errorf("after restart: %+v used=%v err=%v; want the live state, unused", got, used, err)
	}
}
