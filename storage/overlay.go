package storage

import (
	"sync"
)

// recordKey names one record: a bucket (by its index) and a key in it.
type recordKey struct {
	bucket uint8
	key    string
}

// overlayEntry is the latest write of a record that is not in bbolt yet.
type overlayEntry struct {
	val     []byte
	deleted bool
	seq     uint64 // its journal record: readers wait until that is durable; a checkpoint through it removes the entry
}

// entryOverhead approximates what an overlay entry costs beyond its key and
// value (map slot, entry, slice and string headers), so that many small
// records count too.
const entryOverhead = 96

// overlay holds the writes journaled since the last checkpoint, the latest
// per record, so that reads see them before bbolt does. It is safe for
// concurrent use: every method takes the overlay's own lock, a leaf held
// only inside these methods.
type overlay struct {
	mu      sync.RWMutex
	entries map[recordKey]*overlayEntry
	bytes   int64 // what the entries take, roughly: keys, values and entryOverhead each
}

func newOverlay() *overlay {
	return &overlay{entries: map[recordKey]*overlayEntry{}}
}

// get returns the latest write of a record since the last checkpoint, or
// nil when bbolt has the latest.
func (o *overlay) get(k recordKey) *overlayEntry {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.entries[k]
}

// add records the changes of journal record seq.
func (o *overlay) add(ops []op, seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range ops {
		k := recordKey{c.bucket, c.key}
		if old := o.entries[k]; old != nil {
			o.bytes -= entrySize(k, old)
		}
		e := &overlayEntry{val: c.val, deleted: c.del, seq: seq}
		o.entries[k] = e
		o.bytes += entrySize(k, e)
	}
}

func entrySize(k recordKey, e *overlayEntry) int64 {
	return int64(len(k.key) + len(e.val) + entryOverhead)
}

// ops lists every entry as a change to bbolt: the state a checkpoint
// writes.
func (o *overlay) ops() []op {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ops := make([]op, 0, len(o.entries))
	for k, e := range o.entries {
		ops = append(ops, op{bucket: k.bucket, key: k.key, val: e.val, del: e.deleted})
	}
	return ops
}

// removeThrough removes the entries written by journal records up to seq:
// a checkpoint has put them into bbolt.
func (o *overlay) removeThrough(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, e := range o.entries {
		if e.seq <= seq {
			o.bytes -= entrySize(k, e)
			delete(o.entries, k)
		}
	}
}

// size is roughly how many bytes the entries take.
func (o *overlay) size() int64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.bytes
}

// scan returns the keys of a bucket that match and that the overlay
// holds: those it puts, all it decides (puts and deletions, which bbolt's
// must not override), and the newest journal record among them.
func (o *overlay) scan(bucket uint8, match func(key string) bool) (puts []string, decided map[string]bool, newest uint64) {
	decided = map[string]bool{}
	o.mu.RLock()
	defer o.mu.RUnlock()
	for k, e := range o.entries {
		if k.bucket != bucket || !match(k.key) {
			continue
		}
		decided[k.key] = true
		newest = max(newest, e.seq)
		if !e.deleted {
			puts = append(puts, k.key)
		}
	}
	return puts, decided, newest
}
