package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage/journal"
)

// powerDisk stands in for a disk under the journal that loses power: it
// keeps, per segment file, the content its last sync made durable. A
// crash test's kill -9 leaves the page cache to the kernel, which writes
// it out later; a power cut loses every byte not yet fdatasync'ed.
type powerDisk struct {
	mu      sync.Mutex
	durable map[string][]byte // segment path → what survives a power cut
	off     bool              // power is cut: syncs fail, nothing more becomes durable
	armed   bool              // the power goes at the next sync, before it makes anything durable
}

// load takes the segment files as they are, after OpenBolt and before any
// write: created and preallocated with a real sync, or restored by
// powerCut.
func (d *powerDisk) load(t *testing.T, dbPath string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.durable = map[string][]byte{}
	d.off, d.armed = false, false
	for _, p := range journal.SegmentPaths(dbPath) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d.durable[p] = data
	}
}

// sync is the journal's sync: the file's first end bytes become durable.
func (d *powerDisk) sync(f *os.File, end int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.armed {
		d.off = true
	}
	if d.off {
		return errors.New("power lost")
	}
	img := d.durable[f.Name()]
	if int64(len(img)) < end {
		img = append(img, make([]byte, end-int64(len(img)))...)
		d.durable[f.Name()] = img
	}
	_, err := f.ReadAt(img[:end], 0)
	return err
}

func (d *powerDisk) isOff() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.off
}

// cutAtNextSync makes the power go when the journal next syncs: bytes it
// wrote for that sync are then on their way and never durable, so every
// cut has something to lose (a cut between two writes could find nothing
// unsynced and test nothing).
func (d *powerDisk) cutAtNextSync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = true
}

// powerCut stops the store as a power cut does: what the journal had not
// synced is lost, except that the first fraction torn of it reached the
// disk (a torn write, which must not be replayed as a whole record). bbolt's
// commits are synced before they return and the checkpoint loop is stopped
// first, so its file is as a power cut would leave it. The power must be
// off and every writer returned. It reports how many unsynced bytes it
// dropped.
func (d *powerDisk) powerCut(t *testing.T, b *Bolt, torn float64) (dropped int) {
	t.Helper()
	crash(t, b)
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, img := range d.durable {
		now, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := differingRange(img, now)
		if lo < hi {
			dropped += hi - lo
			img = append(append([]byte{}, img[:lo]...), img[lo:]...)
			copy(img[lo:], now[lo:lo+int(torn*float64(hi-lo))])
		}
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dropped
}

// differingRange is the smallest [lo, hi) outside of which a and b agree.
func differingRange(a, b []byte) (lo, hi int) {
	n := min(len(a), len(b))
	for lo < n && a[lo] == b[lo] {
		lo++
	}
	if lo == n && len(a) == len(b) {
		return 0, 0
	}
	hi = n
	for hi > lo && a[hi-1] == b[hi-1] {
		hi--
	}
	return lo, min(hi, len(a))
}

// Power is cut at random moments while writers count logins and
// checkpoints run all the time. After each cut, every acknowledged write is
// there; of each writer's write in flight, all or nothing is; and bbolt's
// file is consistent.
func TestJournalSurvivesPowerLoss(t *testing.T) {
	const writers, rounds = 6, 12
	path := filepath.Join(t.TempDir(), "wx.db")
	disk := &powerDisk{}
	withDisk := func(c *boltConfig) {
		c.sync = disk.sync
		c.every = time.Millisecond
		c.log = slog.New(slog.DiscardHandler)
	}
	acked := make([]int64, writers) // per writer: the login count last acknowledged
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range rounds {
		b := openTestBolt(t, path, withDisk)
		disk.load(t, path)
		checkPowerLossState(t, b, acked)

		var total atomic.Int64
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for !disk.isOff() {
					if err := countWithMarker(b, w, acked[w]+1); err != nil {
						return // the power is off
					}
					acked[w]++
					total.Add(1)
				}
			})
		}
		cutAfter := 1 + rng.Int64N(150)
		for total.Load() < cutAfter {
			time.Sleep(100 * time.Microsecond)
		}
		disk.cutAtNextSync()
		wg.Wait()
		torn := 0.0 // odd rounds: part of the unsynced bytes reached the disk
		if round%2 == 1 {
			torn = rng.Float64()
		}
		if dropped := disk.powerCut(t, b, torn); dropped == 0 {
			t.Errorf("round %d: the power cut dropped no unsynced bytes: it tested nothing", round)
		}
	}
	b := openTestBolt(t, path, never)
	defer b.Close()
	checkPowerLossState(t, b, acked)
}

// countWithMarker sets writer w's login count to n and, in the same
// journal record, a callback record "w<w>#<n>": a write replayed in part
// would show one without the other.
func countWithMarker(b *Bolt, w int, n int64) error {
	openID := fmt.Sprintf("w%d", w)
	keys := login.UpdateKeys{OpenID: openID, DedupeKey: fmt.Sprintf("%s#%d", openID, n)}
	return b.Update(context.Background(), keys, func(s login.ReadSet) (login.WriteSet, error) {
		if got := loginCount(s.User); got != n-1 {
			return login.WriteSet{}, fmt.Errorf("%s: count %d, want %d", openID, got, n-1)
		}
		return login.WriteSet{
			User:   &login.User{OpenID: openID, LoginCount: n},
			Record: &login.Result{Outcome: login.OutcomeConfirmed, HandledAt: time.Now()},
		}, nil
	})
}

func loginCount(u *login.User) int64 {
	if u == nil {
		return 0
	}
	return u.LoginCount
}

// checkPowerLossState checks a reopened store against what was
// acknowledged, and sets acked to what survived (the write in flight may
// have reached the disk whole).
func checkPowerLossState(t *testing.T, b *Bolt, acked []int64) {
	t.Helper()
	ctx := t.Context()
	boltCounts(t, b.db) // bbolt's consistency check
	for w := range acked {
		openID := fmt.Sprintf("w%d", w)
		u, err := read[login.User](ctx, b, bUsers, openID)
		if err != nil {
			t.Fatal(err)
		}
		got := loginCount(u)
		if got < acked[w] || got > acked[w]+1 {
			t.Fatalf("%s: %d logins after a power cut, want %d acknowledged (or one more in flight)", openID, got, acked[w])
		}
		for n := got; n <= got+1; n++ {
			rec, err := read[login.Result](ctx, b, bCallbacks, fmt.Sprintf("%s#%d", openID, n))
			if err != nil {
				t.Fatal(err)
			}
			if (rec != nil) != (n == got && n > 0) {
				t.Fatalf("%s: count %d, marker %d present: %v (half a record replayed)", openID, got, n, rec != nil)
			}
		}
		acked[w] = got
	}
}
