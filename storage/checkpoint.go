package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/storage/journal"
)

// closedGeneration is a journal generation switched out and on its way
// into bbolt: the overlay's state at the switch, which is exactly the state
// after the generation's last record.
type closedGeneration struct {
	journal.ClosedGeneration
	ops []op
}

// checkpoint closes the current journal generation and writes its state
// into bbolt in one commit, with the generation number, so replay skips
// it. A failed commit is retried as it was (not with newer writes mixed
// in) before any new generation is closed.
func (b *Bolt) checkpoint() error {
	b.checkpointMu.Lock()
	defer b.checkpointMu.Unlock()
	err := b.commitGeneration()
	if err != nil {
		b.lastCheckpointErr.Store(&err)
	} else {
		b.lastCheckpointErr.Store(nil)
	}
	return err
}

// commitGeneration does checkpoint's work; the caller holds checkpointMu.
func (b *Bolt) commitGeneration() error {
	if b.uncommitted == nil {
		// Let an earlier switch reach the files first (a writer that gave
		// up waiting can leave it pending), so this one can happen.
		if err := b.journal.Wait(context.Background(), b.journal.LastSeq()); err != nil {
			return err
		}
		b.uncommitted = b.closeGeneration()
		if b.uncommitted == nil {
			return nil // nothing written since the last checkpoint
		}
	}
	g := b.uncommitted
	if err := b.journal.Wait(context.Background(), g.LastSeq); err != nil {
		return err
	}
	start := time.Now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		if b.checkpointFault != nil {
			if err := b.checkpointFault(); err != nil {
				return err
			}
		}
		if err := applyOps(tx, g.ops); err != nil {
			return err
		}
		return putJournalGen(tx, g.Number)
	})
	b.timings("checkpoint", time.Since(start))
	if err != nil {
		return err
	}
	// Under writeMu: a write in progress must not see an entry vanish
	// from the overlay after its bbolt read transaction began.
	b.writeMu.Lock()
	b.overlay.removeThrough(g.LastSeq)
	b.writeMu.Unlock()
	b.uncommitted = nil
	return nil
}

// closeGeneration switches the journal to the next generation and returns
// the closed one's state, or nil when nothing was written since the last
// switch (or that switch has not reached the files yet). Under writeMu, so
// the overlay's state is exactly the closed generation's.
func (b *Bolt) closeGeneration() *closedGeneration {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	closed, ok := b.journal.SwitchGeneration()
	if !ok {
		return nil
	}
	return &closedGeneration{ClosedGeneration: closed, ops: b.overlay.ops()}
}

// applyOps writes ops into bbolt, in key order (bbolt fills pages best
// that way). The sort is stable: one journal record may delete a key and
// put it again, and on replay the put must stay last.
func applyOps(tx *bolt.Tx, ops []op) error {
	slices.SortStableFunc(ops, func(a, b op) int {
		return cmp.Or(cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.key, b.key))
	})
	for _, c := range ops {
		bk := tx.Bucket(allBuckets[c.bucket])
		var err error
		if c.del {
			err = bk.Delete([]byte(c.key))
		} else {
			err = bk.Put([]byte(c.key), c.val)
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", allBuckets[c.bucket], c.key, err)
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
	defer close(b.loopDone)
	t := time.NewTicker(every)
	defer t.Stop()
	var logged string
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.generationFull:
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

// replayInto returns the journal's replay function for db: it writes, in
// one commit, the generations a crash left only in the journal, and records
// the newest as bbolt's.
func replayInto(db *bolt.DB, log *slog.Logger) func([]journal.Generation) error {
	return func(gens []journal.Generation) error {
		records := 0
		err := db.Update(func(tx *bolt.Tx) error {
			for _, g := range gens {
				for i, p := range g.Payloads {
					ops, err := decodeOps(p)
					if err != nil {
						return fmt.Errorf("generation %d, record %d: %w", g.Number, i, err)
					}
					if err := applyOps(tx, ops); err != nil {
						return err
					}
					records++
				}
			}
			return putJournalGen(tx, gens[len(gens)-1].Number)
		})
		if err != nil {
			return err
		}
		log.Info("replayed the journal into bbolt after an unclean stop", "records", records, "generations", len(gens), "newest", gens[len(gens)-1].Number)
		return nil
	}
}
