package storage

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketKept holds state a process keeps across a graceful restart, written
// once at shutdown and taken once at start. It lies outside the journal:
// one bbolt commit at each end is nothing, and such state must not cost a
// commit per request.
var bucketKept = []byte("kept")

// Keep stores data under name until TakeKept; nil data stores nothing.
func (b *Bolt) Keep(name string, data []byte) error {
	if data == nil {
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketKept)
		if err != nil {
			return err
		}
		return bk.Put([]byte(name), data)
	})
	if err != nil {
		return fmt.Errorf("keep %s: %w", name, err)
	}
	return nil
}

// TakeKept returns what Keep stored under name and removes it, so a later
// crash does not bring back state older than the last graceful stop. It is
// nil when nothing is kept.
func (b *Bolt) TakeKept(name string) ([]byte, error) {
	var data []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketKept); bk != nil {
			data = append([]byte(nil), bk.Get([]byte(name))...)
		}
		return nil
	})
	if err != nil || len(data) == 0 {
		return nil, wrapKept(name, err)
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketKept)
		if err := bk.Delete([]byte(name)); err != nil {
			return err
		}
		if k, _ := bk.Cursor().First(); k == nil {
			return tx.DeleteBucket(bucketKept)
		}
		return nil
	})
	return data, wrapKept(name, err)
}

func wrapKept(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("take kept %s: %w", name, err)
}
