package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

func openBenchBolt(b *testing.B, opts ...storage.BoltOption) *storage.Bolt {
	b.Helper()
	db, err := storage.OpenBolt(filepath.Join(b.TempDir(), "bench.db"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// scanUpdate is what a confirmed scan writes: the scene, the user's count,
// and the dedupe record, in one durable transaction.
func scanUpdate(db *storage.Bolt, sceneID, openID, key string) error {
	now := time.Now().UTC()
	return db.Update(context.Background(), login.UpdateKeys{SceneID: sceneID, OpenID: openID, DedupeKey: key},
		func(s login.ReadSet) (login.WriteSet, error) {
			u := login.User{ID: "u_" + openID, OpenID: openID, Name: login.DefaultUserName, FirstLoginAt: now}
			if s.User != nil {
				u = *s.User
			}
			u.LoginCount++
			u.LastLoginAt = now
			w := login.WriteSet{User: &u, Record: &login.Result{Outcome: login.OutcomeConfirmed, HandledAt: now}}
			if s.Scene != nil {
				next := *s.Scene
				next.Version++
				next.Status, next.OpenID, next.ConfirmedAt = login.StatusConfirmed, openID, now
				w.Scene = &next
			}
			return w, nil
		})
}

func createBenchScenes(b *testing.B, db *storage.Bolt, n int) []string {
	b.Helper()
	ids := make([]string, n)
	now := time.Now().UTC()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 { // concurrent inserts share commits: quick set-up
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				id := fmt.Sprintf("bench%017d", (i*7919)%n) // not in key order, like random ids
				sc := &login.Scene{ID: id, Status: login.StatusPending, Version: 1, CreatedAt: now,
					ExpiresAt: now.Add(time.Hour), SecretHash: make([]byte, 32), QRURL: "http://weixin.qq.com/q/x"}
				if err := db.CreateScene(context.Background(), sc); err != nil {
					b.Error(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	return ids
}

// BenchmarkBoltUpdate is one writer at a time: every op waits for its own
// journal sync (one small write and one fdatasync); bbolt's commits happen
// behind it, at checkpoints.
func BenchmarkBoltUpdate(b *testing.B) {
	db := openBenchBolt(b)
	ids := createBenchScenes(b, db, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := scanUpdate(db, ids[i%len(ids)], fmt.Sprintf("o%d", i%100), fmt.Sprintf("k%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltUpdateParallel is 32 concurrent callbacks per CPU: their
// updates share journal syncs. ns/op here is the inverse of throughput.
func BenchmarkBoltUpdateParallel(b *testing.B) {
	db := openBenchBolt(b)
	ids := createBenchScenes(b, db, 20000) // about the scenes of 10 000 waiters and their churn
	var n atomic.Int64
	before := db.DB().Stats().TxStats
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := scanUpdate(db, ids[int(i)%len(ids)], fmt.Sprintf("o%d", i%100), fmt.Sprintf("k%d", i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	// Disk time is noisy on a shared machine; what is written is not.
	// bbolt's page writes now happen at checkpoints, shared by every update
	// since the previous one: flush the last before counting.
	if err := db.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	after := db.DB().Stats().TxStats
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "pwrites/op")
	b.ReportMetric(float64(after.GetPageAlloc()-before.GetPageAlloc())/float64(b.N), "dirty-bytes/op")
}

// BenchmarkBoltScene is the read behind every poll and stream connect.
func BenchmarkBoltScene(b *testing.B) {
	db := openBenchBolt(b)
	ids := createBenchScenes(b, db, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := db.Scene(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}
