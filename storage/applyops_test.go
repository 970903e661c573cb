package storage

import (
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A journal record may delete a key and put it again; applied in key order
// (as a replay does), the put must still win, however many ops the record
// holds (Go's unstable sort keeps equal keys in order only below 12).
func TestApplyOpsKeepsTheOrderOfOneKey(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "ops.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for n := 1; n <= 64; n *= 2 {
		// Every delete first, then every put, keys in a scrambled order:
		// what a record looks like once it touches many keys.
		var ops []op
		for i := range n {
			ops = append(ops, op{bucket: bScenes, key: fmt.Sprintf("k%03d", (i*37)%n), del: true})
		}
		for i := range n {
			ops = append(ops, op{bucket: bScenes, key: fmt.Sprintf("k%03d", (i*53)%n), val: []byte("v")})
		}
		err := db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(allBuckets[bScenes]); err != nil {
				return err
			}
			if err := applyOps(tx, ops); err != nil {
				return err
			}
			for i := range n {
				if tx.Bucket(allBuckets[bScenes]).Get(fmt.Appendf(nil, "k%03d", i)) == nil {
					return fmt.Errorf("%d keys: k%03d was deleted after its put", n, i)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
