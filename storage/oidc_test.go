package storage_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
	"wxlogin/storage"
)

// oidcRecords is what both OIDC record stores offer (oidcprovider.Records).
type oidcRecords interface {
	Put(ctx context.Context, kind, key string, value []byte, expires time.Time) error
	Add(ctx context.Context, kind, key string, value []byte, expires time.Time) (bool, error)
	Get(ctx context.Context, kind, key string) ([]byte, error)
	Take(ctx context.Context, kind, key string) ([]byte, error)
	Update(ctx context.Context, kind, key string, fn func(old []byte) ([]byte, error)) error
	Delete(ctx context.Context, kind, key string) error
	PurgeExpired(ctx context.Context) (int, error)
}

func TestOIDCRecords(t *testing.T) {
	stores := map[string]func(t *testing.T) oidcRecords{
		"bolt": func(t *testing.T) oidcRecords {
			b, err := storage.OpenBolt(filepath.Join(t.TempDir(), "db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			r, err := storage.NewOIDCBolt(b)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		"redis": func(t *testing.T) oidcRecords {
			_, rdb, prefix := newTestRedisStore(t)
			return storage.NewOIDCRedis(rdb, prefix)
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := open(t)
			if _, err := r.Get(ctx, "k", "missing"); !errors.Is(err, login.ErrNotFound) {
				t.Fatalf("missing: %v", err)
			}
			if err := r.Put(ctx, "k", "a", []byte("one"), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if v, err := r.Get(ctx, "k", "a"); err != nil || string(v) != "one" {
				t.Fatalf("get: %q %v", v, err)
			}
			if _, err := r.Get(ctx, "other-kind", "a"); !errors.Is(err, login.ErrNotFound) {
				t.Fatalf("kinds are separate: %v", err)
			}
			// Add keeps the first value.
			if ok, err := r.Add(ctx, "k", "a", []byte("two"), time.Time{}); ok || err != nil {
				t.Fatalf("add over a record: %v %v", ok, err)
			}
			if ok, err := r.Add(ctx, "k", "b", []byte("b"), time.Time{}); !ok || err != nil {
				t.Fatalf("add: %v %v", ok, err)
			}
			// Update sees the old value; its refusal changes nothing.
			refused := login.Errorf(login.ECONFLICT, "no")
			if err := r.Update(ctx, "k", "a", func(old []byte) ([]byte, error) { return nil, refused }); !errors.Is(err, refused) {
				t.Fatalf("refused update: %v", err)
			}
			if err := r.Update(ctx, "k", "a", func(old []byte) ([]byte, error) { return append(old, '!'), nil }); err != nil {
				t.Fatal(err)
			}
			if v, _ := r.Get(ctx, "k", "a"); string(v) != "one!" {
				t.Fatalf("after update: %q", v)
			}
			if err := r.Update(ctx, "k", "missing", func(old []byte) ([]byte, error) { return old, nil }); !errors.Is(err, login.ErrNotFound) {
				t.Fatalf("update of a missing record: %v", err)
			}
			// Expiry.
			if err := r.Put(ctx, "k", "short", []byte("x"), time.Now().Add(50*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(120 * time.Millisecond)
			if _, err := r.Get(ctx, "k", "short"); !errors.Is(err, login.ErrNotFound) {
				t.Fatalf("expired record: %v", err)
			}
			if ok, err := r.Add(ctx, "k", "short", []byte("y"), time.Time{}); !ok || err != nil {
				t.Fatalf("add over an expired record: %v %v", ok, err)
			}
			if err := r.Put(ctx, "k", "gone", []byte("x"), time.Now().Add(time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			if _, err := r.PurgeExpired(ctx); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"a", "b", "short"} {
				if _, err := r.Get(ctx, "k", k); err != nil {
					t.Fatalf("purge removed live record %s: %v", k, err)
				}
			}
			if err := r.Delete(ctx, "k", "b"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Get(ctx, "k", "b"); !errors.Is(err, login.ErrNotFound) {
				t.Fatalf("deleted: %v", err)
			}

			// Take: of many concurrent takers exactly one gets the record.
			for round := range 5 {
				key := "code" + string(rune('0'+round))
				if err := r.Put(ctx, "code", key, []byte("req"), time.Now().Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				var won atomic.Int32
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						v, err := r.Take(ctx, "code", key)
						switch {
						case err == nil && bytes.Equal(v, []byte("req")):
							won.Add(1)
						case !errors.Is(err, login.ErrNotFound):
							t.Errorf("take: %q %v", v, err)
						}
					})
				}
				wg.Wait()
				if won.Load() != 1 {
					t.Fatalf("round %d: %d takers got the code", round, won.Load())
				}
			}
		})
	}
}

// TestOIDCBoltBesideTheJournal writes OIDC records while the journal takes
// logins, and checks both survive a restart and bbolt stays consistent.
func TestOIDCBoltBesideTheJournal(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	b, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := storage.NewOIDCBolt(b)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			sess := &login.Session{TokenHash: "h" + string(rune('A'+i)), OpenID: "o", UserID: "u",
				CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := b.CreateSession(ctx, sess); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range 50 {
		if err := r.Put(ctx, "authreq", "id"+string(rune('A'+i)), []byte("x"), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err = storage.NewOIDCBolt(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := r.Get(ctx, "authreq", "id"+string(rune('A'+i))); err != nil {
			t.Fatalf("record %d after restart: %v", i, err)
		}
		if _, err := b.Session(ctx, "h"+string(rune('A'+i))); err != nil {
			t.Fatalf("session %d after restart: %v", i, err)
		}
	}
	err = b.DB().View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}
