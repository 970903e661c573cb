package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one change to one key: the unit of a journal record.
type op struct {
	bucket uint8
	key    string
	val    []byte // the new value of a put (never nil for a put)
	del    bool
}

// entry is the latest write of a key that is not in bbolt yet.
type entry struct {
	val []byte
	del bool
	seq uint64 // its journal record: readers wait until that is durable; a checkpoint up to it drops it
}

func ovKey(bucket uint8, key string) string { return string(rune(bucket)) + key }

// wtx is one write: it reads through the overlay into bbolt and collects
// the changes, which Bolt.write journals as one record.
type wtx struct {
	b    *Bolt
	tx   *bolt.Tx // read-only: bbolt changes only at checkpoints
	ops  []op
	seen uint64 // newest journal record read: this write depends on it
}

// get returns the current value of a key, or nil. The slice is only valid
// during the write.
func (w *wtx) get(bucket uint8, key string) []byte {
	for i := len(w.ops) - 1; i >= 0; i-- {
		if o := w.ops[i]; o.bucket == bucket && o.key == key {
			return o.val
		}
	}
	// Writers hold writeMu, as does everything else that changes the
	// overlay: no ovMu needed to read it.
	if e := w.b.overlay[ovKey(bucket, key)]; e != nil {
		w.seen = max(w.seen, e.seq)
		if e.del {
			return nil
		}
		return e.val
	}
	return w.tx.Bucket(allBuckets[bucket]).Get([]byte(key))
}

func (w *wtx) put(bucket uint8, key string, val []byte) {
	if val == nil {
		val = []byte{}
	}
	w.ops = append(w.ops, op{bucket: bucket, key: key, val: val})
}

func (w *wtx) del(bucket uint8, key string) {
	w.ops = append(w.ops, op{bucket: bucket, key: key, del: true})
}

func (w *wtx) putJSON(bucket uint8, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.put(bucket, key, raw)
	return nil
}

func (w *wtx) dueKeys(bucket uint8, now time.Time, limit int) []string {
	keys, _ := w.b.dueKeys(w.tx, bucket, now, limit) // no error with a transaction given
	return keys
}

// write runs fn and makes its changes durable: one journal record, synced
// together with whatever other writes are waiting (journal.wait). The
// changes are visible to readers from the overlay at once, but a reader
// that sees them waits for the same sync, so nobody acts on a change a
// crash could still take back.
//
// A write that changes nothing, or fails on what it read (a conflict), also
// waits for the sync of what it read: its answer depends on it.
func (b *Bolt) write(ctx context.Context, fn func(*wtx) error) error {
	b.writeMu.Lock()
	seq, err := b.writeLocked(fn)
	b.writeMu.Unlock()
	if seq > 0 {
		if werr := b.j.wait(ctx, seq); werr != nil {
			return werr
		}
	}
	return err
}

// writeLocked runs fn and journals its changes. It returns the journal
// record the caller must wait for (0: none), and fn's or the journal's error.
func (b *Bolt) writeLocked(fn func(*wtx) error) (uint64, error) {
	tx, err := b.db.Begin(false)
	if err != nil {
		return 0, err
	}
	w := &wtx{b: b, tx: tx}
	err = callSafely(fn, w)
	tx.Rollback()
	if err != nil || len(w.ops) == 0 {
		return w.seen, err
	}
	seq, err := b.j.append(encodeOps(w.ops))
	if err != nil {
		return 0, err
	}
	b.ovMu.Lock()
	for _, o := range w.ops {
		b.overlay[ovKey(o.bucket, o.key)] = &entry{val: o.val, del: o.del, seq: seq}
	}
	b.ovMu.Unlock()
	return seq, nil
}

// callSafely turns a panic in fn into an error: one bad update must not
// leave writeMu locked.
func callSafely(fn func(*wtx) error, w *wtx) (err error) {
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
	b.ovMu.RLock()
	e := b.overlay[ovKey(bucket, key)]
	b.ovMu.RUnlock()
	if e != nil {
		if err := b.j.wait(ctx, e.seq); err != nil {
			return nil, err
		}
		if e.del {
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
	end := string(dueKey(now, ""))
	var puts []string
	shadow := map[string]bool{} // keys the overlay decides, put or deleted
	b.ovMu.RLock()
	for k, e := range b.overlay {
		if k[0] != bucket || len(k) < 9 || k[1:9] > end {
			continue
		}
		shadow[k[1:]] = true
		if !e.del {
			puts = append(puts, k[1:])
		}
	}
	b.ovMu.RUnlock()
	keys := puts
	scan := func(tx *bolt.Tx) error {
		c := tx.Bucket(allBuckets[bucket]).Cursor()
		n := 0
		for k, _ := c.First(); k != nil && n < limit && bytes.Compare(k[:8], []byte(end)) <= 0; k, _ = c.Next() {
			if !shadow[string(k)] {
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

// checkpoint is a closed journal generation on its way into bbolt: the
// overlay's state at the switch, which is exactly the state after the
// generation's last record.
type checkpoint struct {
	gen  uint64
	last uint64 // the generation's last record
	ops  []op
}

// checkpoint closes the current generation and writes its state into
// bbolt in one commit, with the generation number, so replay skips it.
// A failed commit is retried as it was (not with newer writes mixed in)
// before any new generation is closed.
func (b *Bolt) checkpoint() error {
	b.ckMu.Lock()
	defer b.ckMu.Unlock()
	if b.todo == nil {
		// Let an earlier switch reach the files first (a writer that gave
		// up waiting can leave it pending), so this one can happen.
		if err := b.j.wait(context.Background(), b.j.lastSeq()); err != nil {
			b.ckErr = err
			return err
		}
		b.todo = b.closeGeneration()
		if b.todo == nil {
			return nil
		}
	}
	err := b.j.wait(context.Background(), b.todo.last)
	if err == nil {
		start := time.Now()
		err = b.db.Update(func(tx *bolt.Tx) error {
			if err := applyOps(tx, b.todo.ops); err != nil {
				return err
			}
			return putJournalGen(tx, b.todo.gen)
		})
		b.timings("checkpoint", time.Since(start))
	}
	b.ckErr = err
	if err != nil {
		return err
	}
	b.writeMu.Lock()
	b.ovMu.Lock()
	for k, e := range b.overlay {
		if e.seq <= b.todo.last { // written in the generation now in bbolt
			delete(b.overlay, k)
		}
	}
	b.ovMu.Unlock()
	b.writeMu.Unlock()
	b.todo = nil
	return nil
}

// closeGeneration switches the journal to the next generation and returns
// the closed one's state, or nil when nothing was written since the last
// switch (or that switch has not reached the files yet).
func (b *Bolt) closeGeneration() *checkpoint {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if b.j.lastSeq() == b.switched {
		return nil
	}
	gen, last, ok := b.j.switchGen()
	if !ok {
		return nil
	}
	ck := &checkpoint{gen: gen, last: last, ops: make([]op, 0, len(b.overlay))}
	for k, e := range b.overlay {
		ck.ops = append(ck.ops, op{bucket: k[0], key: k[1:], val: e.val, del: e.del})
	}
	b.switched = last
	return ck
}

// applyOps writes ops into bbolt, in key order (bbolt fills pages best
// that way).
func applyOps(tx *bolt.Tx, ops []op) error {
	slices.SortFunc(ops, func(a, b op) int {
		return cmp.Or(cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.key, b.key))
	})
	for _, o := range ops {
		bk := tx.Bucket(allBuckets[o.bucket])
		var err error
		if o.del {
			err = bk.Delete([]byte(o.key))
		} else {
			err = bk.Put([]byte(o.key), o.val)
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", allBuckets[o.bucket], o.key, err)
		}
	}
	return nil
}

// putJournalGen records gen as the newest journal generation in bbolt.
func putJournalGen(tx *bolt.Tx, gen uint64) error {
	var g [8]byte
	binary.BigEndian.PutUint64(g[:], gen)
	return tx.Bucket(bucketMeta).Put(keyJournalGen, g[:])
}

func (b *Bolt) checkpointLoop(every time.Duration) {
	defer close(b.looped)
	t := time.NewTicker(every)
	defer t.Stop()
	var logged string
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.full:
		}
		err := b.checkpoint()
		switch {
		case err == nil:
			if logged != "" {
				b.log.Info("checkpoints into bbolt work again")
			}
			logged = ""
		case err.Error() != logged: // once per distinct failure, not twice a second
			logged = err.Error()
			b.log.Error("checkpoint of the journal into bbolt failed; writes stay in the journal", "err", err)
		}
	}
}

// Checkpoint moves every durable write into bbolt now (tests and tools that
// read the file through DB).
func (b *Bolt) Checkpoint(ctx context.Context) error {
	if err := b.checkpoint(); err != nil {
		return wrap("checkpoint", err)
	}
	return nil
}

// replay writes into bbolt, in one commit, the generations the journal
// holds beyond ckGen (bbolt's last checkpoint): what a crash left only in
// the journal. It returns the newest generation now in bbolt.
func replay(db *bolt.DB, segs [2]segment, ckGen uint64, log *slog.Logger) (uint64, error) {
	var todo []segment
	for _, s := range segs {
		if s.gen > ckGen {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return ckGen, nil
	}
	slices.SortFunc(todo, func(a, b segment) int { return cmp.Compare(a.gen, b.gen) })
	records := 0
	err := db.Update(func(tx *bolt.Tx) error {
		for _, s := range todo {
			for i, p := range s.payloads {
				ops, err := decodeOps(p)
				if err != nil {
					return fmt.Errorf("generation %d, record %d: %w", s.gen, i, err)
				}
				if err := applyOps(tx, ops); err != nil {
					return err
				}
				records++
			}
		}
		return putJournalGen(tx, todo[len(todo)-1].gen)
	})
	if err != nil {
		return 0, err
	}
	newest := todo[len(todo)-1].gen
	log.Info("replayed the journal into bbolt after an unclean stop", "records", records, "generations", len(todo), "newest", newest)
	return newest, nil
}

// encodeOps is a journal record's payload: per op its bucket, a kind (1 put,
// 2 delete), the key and, for a put, the value, lengths as uvarints.
func encodeOps(ops []op) []byte {
	n := 0
	for _, o := range ops {
		n += 2 + 2*binary.MaxVarintLen32 + len(o.key) + len(o.val)
	}
	p := make([]byte, 0, n)
	for _, o := range ops {
		kind := byte(1)
		if o.del {
			kind = 2
		}
		p = append(p, o.bucket, kind)
		p = binary.AppendUvarint(p, uint64(len(o.key)))
		p = append(p, o.key...)
		if !o.del {
			p = binary.AppendUvarint(p, uint64(len(o.val)))
			p = append(p, o.val...)
		}
	}
	return p
}

var errBadRecord = errors.New("malformed journal record")

// decodeOps parses a payload written by encodeOps. Values are copied.
func decodeOps(p []byte) ([]op, error) {
	var ops []op
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return nil, errBadRecord
		}
		f := p[w : w+int(n)]
		p = p[w+int(n):]
		return f, nil
	}
	for len(p) > 0 {
		if len(p) < 2 || int(p[0]) >= len(allBuckets) || (p[1] != 1 && p[1] != 2) {
			return nil, errBadRecord
		}
		o := op{bucket: p[0], del: p[1] == 2}
		p = p[2:]
		key, err := field()
		if err != nil {
			return nil, err
		}
		o.key = string(key)
		if !o.del {
			val, err := field()
			if err != nil {
				return nil, err
			}
			o.val = append([]byte{}, val...)
		}
		ops = append(ops, o)
	}
	return ops, nil
}
