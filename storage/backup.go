package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"wxlogin/login"
)

// Backup hands send a consistent copy of the whole database while writes go
// on: the journal is checkpointed into bbolt first, so the one file holds
// every write acknowledged before Backup was called, then one bbolt read
// transaction is the snapshot. Its copy includes free pages, which writers
// may reuse while it runs: hash the bytes as they are copied, not in a second pass.
//
// The read transaction stays open while send runs, and bbolt cannot grow
// its memory map meanwhile: a checkpoint that needs a bigger file waits for
// the backup to end. Logins go on (they only need the journal), so a slow
// backup client delays checkpoints, not logins.
func (b *Bolt) Backup(ctx context.Context, send func(size int64, writeTo func(io.Writer) (int64, error)) error) error {
	if err := b.checkpointAll(ctx); err != nil {
		return err
	}
	return b.db.View(func(tx *bolt.Tx) error {
		return send(tx.Size(), tx.WriteTo)
	})
}

// checkpointAll moves every write acknowledged so far into bbolt. Twice:
// a checkpoint that finds an earlier failed one to retry finishes only that.
func (b *Bolt) checkpointAll(ctx context.Context) error {
	for range 2 {
		if err := b.Checkpoint(ctx); err != nil {
			return err
		}
	}
	return nil
}

// CheckSnapshot opens a backup read-only and checks that it is a wxlogin
// database this build can use: a bbolt file with wxlogin's buckets, of a
// format version no newer than FormatVersion, whose pages pass bbolt's
// consistency check. It returns the format version.
func CheckSnapshot(path string) (version uint64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	// bbolt trusts its pages: a damaged file can make it panic instead of
	// failing, and this file comes from outside.
	defer func() {
		if p := recover(); p != nil {
			version, err = 0, fmt.Errorf("%s is a damaged database: %v", path, p)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("%s is not a bbolt database: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		// A page past the end of the file is a fault (SIGBUS), not an
		// error, once bbolt touches it: refuse a cut-off file first.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%s is cut off: %d bytes, its header says %d", path, fi.Size(), tx.Size())
		}
		for _, name := range [][]byte{allBuckets[bScenes], allBuckets[bUsers], allBuckets[bSessions], bucketMeta} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%s is a bbolt database but not wxlogin's (no %q bucket)", path, name)
			}
		}
		version = formatOf(tx)
		if version > FormatVersion {
			return fmt.Errorf("%s has format version %d, written by a newer wxlogin; this build knows up to %d", path, version, FormatVersion)
		}
		for err := range tx.Check() {
			return fmt.Errorf("%s fails bbolt's consistency check: %w", path, err)
		}
		return checkRecords(tx)
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// checkRecords decodes every user and session: the service reads them all
// (the format upgrade, migrate), so a file whose records do not decode is
// refused here rather than at the next start.
func checkRecords(tx *bolt.Tx) error {
	check := func(bucket uint8, decodeOne func(k, v []byte) error) error {
		if err := tx.Bucket(allBuckets[bucket]).ForEach(decodeOne); err != nil {
			return fmt.Errorf("a damaged %s record: %w", allBuckets[bucket], err)
		}
		return nil
	}
	if err := check(bUsers, func(k, v []byte) error { _, err := decode[login.User](v, string(k)); return err }); err != nil {
		return err
	}
	return check(bSessions, func(k, v []byte) error { _, err := decode[login.Session](v, string(k)); return err })
}

// ErrInUse is returned by Restore when the target database is open in a
// running service.
var ErrInUse = errors.New("the database is in use (is wxlogin running? stop it first)")

// Restore puts the backup at src in place of the database at dst, for a
// stopped service. src is checked first (CheckSnapshot) and copied to a
// temporary file next to dst, synced, then renamed over dst. What was there
// (dst and its journal, whose records belong to the old file and must not be
// replayed into the restored one) is kept with the suffix moved, and
// returned, so nothing is lost by a mistaken restore.
func Restore(src, dst string) (moved []string, err error) {
	if _, err := CheckSnapshot(src); err != nil {
		return nil, err
	}
	// Hold the target's lock for the whole swap: a service starting now
	// waits for it, and a running one makes this fail at once.
	if _, err := os.Stat(dst); err == nil {
		db, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", dst, ErrInUse)
		}
		if err == nil {
			defer db.Close()
		}
		// A target that is not a bbolt file is replaced all the same; it is kept aside.
	}
	tmp, err := copyToTemp(src, dst)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp) // gone after the rename; left over only on failure
	suffix := ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
	for _, p := range []string{dst, dst + "-wal.0", dst + "-wal.1"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := os.Rename(p, p+suffix); err != nil {
			return moved, fmt.Errorf("keep the old %s aside: %w", p, err)
		}
		moved = append(moved, p+suffix)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return moved, fmt.Errorf("put the backup in place: %w", err)
	}
	return moved, syncRestoreDir(filepath.Dir(dst))
}

func copyToTemp(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".restore-*")
	if err != nil {
		return "", fmt.Errorf("create a temporary file next to %s: %w", dst, err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(out.Name(), 0o600)
	}
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Name(), nil
}

// syncRestoreDir makes the renames in dir durable.
func syncRestoreDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
