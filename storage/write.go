package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeTx is one write in progress: it reads through the overlay into
// bbolt and collects its changes, which Bolt.write journals as one record.
// It lives only inside decideAndAppend, under writeMu: nothing it reads
// can change until its record is appended.
type writeTx struct {
	b         *Bolt
	tx        *bolt.Tx // read-only: bbolt changes only at checkpoints
	ops       []op
	dependsOn uint64 // the newest journal record this write read: its answer depends on it
}

// get returns the current value of a record, or nil. The slice is only
// valid during the write.
func (w *writeTx) get(bucket uint8, key string) []byte {
	for i := len(w.ops) - 1; i >= 0; i-- {
		if c := w.ops[i]; c.bucket == bucket && c.key == key {
			return c.val
		}
	}
	if e := w.b.overlay.get(recordKey{bucket, key}); e != nil {
		w.dependsOn = max(w.dependsOn, e.seq)
		if e.deleted {
			return nil
		}
		return e.val
	}
	return w.tx.Bucket(allBuckets[bucket]).Get([]byte(key))
}

func (w *writeTx) put(bucket uint8, key string, val []byte) {
	if val == nil {
		val = []byte{}
	}
	w.ops = append(w.ops, op{bucket: bucket, key: key, val: val})
}

func (w *writeTx) del(bucket uint8, key string) {
	w.ops = append(w.ops, op{bucket: bucket, key: key, del: true})
}

func (w *writeTx) putJSON(bucket uint8, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.put(bucket, key, raw)
	return nil
}

func (w *writeTx) dueKeys(bucket uint8, now time.Time, limit int) []string {
	keys, _ := w.b.dueKeys(w.tx, bucket, now, limit) // no error with a transaction given
	return keys
}

// write runs fn and makes its changes durable: one journal record, synced
// together with whatever other writes are waiting (journal.Wait). The
// changes are visible to readers from the overlay at once, but a reader
// that sees them waits for the same sync, so nobody acts on a change a
// crash could still take back.
//
// A write that changes nothing, or fails on what it read (a conflict), also
// waits for the sync of what it read: its answer depends on it.
func (b *Bolt) write(ctx context.Context, fn func(*writeTx) error) error {
	waitFor, err := b.decideAndAppend(fn)
	if waitFor > 0 {
		if werr := b.journal.Wait(ctx, waitFor); werr != nil {
			return werr
		}
	}
	return err
}

// decideAndAppend runs fn and journals its changes, under writeMu: fn reads
// every change journaled before it, and the overlay gets its changes in
// journal order. It returns the journal record the caller must wait for
// (0: none), and fn's or the journal's error.
func (b *Bolt) decideAndAppend(fn func(*writeTx) error) (waitFor uint64, err error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if err := b.overlayFull(); err != nil {
		return 0, err
	}
	tx, err := b.db.Begin(false)
	if err != nil {
		return 0, err
	}
	w := &writeTx{b: b, tx: tx}
	err = callSafely(fn, w)
	tx.Rollback()
	if err != nil || len(w.ops) == 0 {
		return w.dependsOn, err
	}
	seq, err := b.journal.Append(encodeOps(w.ops))
	if err != nil {
		return 0, err
	}
	b.overlay.add(w.ops, seq)
	return seq, nil
}

// callSafely turns a panic in fn into an error: one bad update must not
// take the process down with writeMu locked.
func callSafely(fn func(*writeTx) error, w *writeTx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in update: %v", p)
		}
	}()
	return fn(w)
}

// read returns a record: the overlay's when the key was written since the
// last checkpoint (once durable), else bbolt's. The overlay is looked at
// first: a checkpoint puts a write into bbolt before it leaves the overlay.
func read[T any](ctx context.Context, b *Bolt, bucket uint8, key string) (*T, error) {
	if e := b.overlay.get(recordKey{bucket, key}); e != nil {
		if err := b.journal.Wait(ctx, e.seq); err != nil {
			return nil, err
		}
		if e.deleted {
			return nil, nil
		}
		return decode[T](e.val, key)
	}
	var v *T
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = decode[T](tx.Bucket(allBuckets[bucket]).Get([]byte(key)), key)
		return err
	})
	return v, err
}

// dueKeys lists up to limit keys of an expiry index due at or before now,
// in time order, merging the overlay with bbolt. With tx nil it opens its
// own read transaction, after reading the overlay (see read).
func (b *Bolt) dueKeys(tx *bolt.Tx, bucket uint8, now time.Time, limit int) ([]string, error) {
	end := dueKey(now, "")
	endKey := string(end)
	due := func(k string) bool { return len(k) >= 8 && k[:8] <= endKey }
	keys, decided, _ := b.overlay.scan(bucket, due)
	scan := func(tx *bolt.Tx) error {
		c := tx.Bucket(allBuckets[bucket]).Cursor()
		n := 0
		for k, _ := c.First(); k != nil && n < limit && bytes.Compare(k[:8], end) <= 0; k, _ = c.Next() {
			if !decided[string(k)] {
				keys = append(keys, string(k))
				n++
			}
		}
		return nil
	}
	if tx != nil {
		scan(tx)
	} else if err := b.db.View(scan); err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return keys[:min(len(keys), limit)], nil
}
