package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
)

// bucketOIDC holds the OpenID Connect provider's records (signing keys, auth
// requests, codes). It is not one of allBuckets: the journal never sees it.
// OIDC writes are a handful per login, so they go straight to bbolt in their
// own transactions; bbolt serialises them with the journal's checkpoints,
// which touch other buckets only, and an online backup (tx.WriteTo) copies
// this bucket with the rest.
var bucketOIDC = []byte("oidc")

// OIDCBolt keeps the OIDC provider's records in the same bbolt file as the
// rest of the data. Keys are kind + 0x00 + key; a value is its expiry
// (big-endian UnixNano, 0 = never) followed by the record.
type OIDCBolt struct {
	db  *bolt.DB
	now func() time.Time
}

// NewOIDCBolt returns the OIDC records of b's file, creating their bucket.
func NewOIDCBolt(b *Bolt) (*OIDCBolt, error) {
	err := b.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketOIDC)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create the oidc bucket: %w", err)
	}
	return &OIDCBolt{db: b.db, now: time.Now}, nil
}

func oidcKey(kind, key string) []byte { return []byte(kind + "\x00" + key) }

func (o *OIDCBolt) encode(value []byte, expires time.Time) []byte {
	out := make([]byte, 8, 8+len(value))
	if !expires.IsZero() {
		binary.BigEndian.PutUint64(out, uint64(expires.UnixNano()))
	}
	return append(out, value...)
}

// live returns the record of a stored value, or nil when it is missing or expired.
func (o *OIDCBolt) live(v []byte) []byte {
	if len(v) < 8 {
		return nil
	}
	if exp := binary.BigEndian.Uint64(v[:8]); exp != 0 && !o.now().Before(time.Unix(0, int64(exp))) {
		return nil
	}
	return v[8:]
}

// Put stores value under kind/key until expires (zero: forever).
func (o *OIDCBolt) Put(ctx context.Context, kind, key string, value []byte, expires time.Time) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOIDC).Put(oidcKey(kind, key), o.encode(value, expires))
	})
	return wrapOIDC("put "+kind, err)
}

// Add stores value only when kind/key holds no live record; it reports
// whether it did.
func (o *OIDCBolt) Add(ctx context.Context, kind, key string, value []byte, expires time.Time) (bool, error) {
	added := false
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOIDC)
		if o.live(b.Get(oidcKey(kind, key))) != nil {
			return nil
		}
		added = true
		return b.Put(oidcKey(kind, key), o.encode(value, expires))
	})
	return added, wrapOIDC("add "+kind, err)
}

// Get returns the record under kind/key; login.ErrNotFound when it is
// missing or expired.
func (o *OIDCBolt) Get(ctx context.Context, kind, key string) ([]byte, error) {
	var out []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		if v := o.live(tx.Bucket(bucketOIDC).Get(oidcKey(kind, key))); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, wrapOIDC("get "+kind, err)
	}
	if out == nil {
		return nil, login.ErrNotFound
	}
	return out, nil
}

// Take returns the record under kind/key and deletes it in the same
// transaction, so of two concurrent takers exactly one gets it.
func (o *OIDCBolt) Take(ctx context.Context, kind, key string) ([]byte, error) {
	var out []byte
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOIDC)
		k := oidcKey(kind, key)
		v := b.Get(k)
		if v == nil {
			return nil
		}
		if live := o.live(v); live != nil {
			out = append([]byte(nil), live...)
		}
		return b.Delete(k)
	})
	if err != nil {
		return nil, wrapOIDC("take "+kind, err)
	}
	if out == nil {
		return nil, login.ErrNotFound
	}
	return out, nil
}

// Update replaces the live record under kind/key with fn's result, keeping
// its expiry; fn's error aborts and is returned. login.ErrNotFound when there
// is no live record.
func (o *OIDCBolt) Update(ctx context.Context, kind, key string, fn func(old []byte) ([]byte, error)) error {
	var refused error
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOIDC)
		k := oidcKey(kind, key)
		raw := b.Get(k)
		old := o.live(raw)
		if old == nil {
			return login.ErrNotFound
		}
		next, err := fn(append([]byte(nil), old...))
		if err != nil {
			refused = err
			return err
		}
		v := make([]byte, 0, 8+len(next))
		v = append(append(v, raw[:8]...), next...)
		return b.Put(k, v)
	})
	if refused != nil {
		return refused
	}
	return wrapOIDC("update "+kind, err)
}

// Delete removes kind/key (nothing when it is missing).
func (o *OIDCBolt) Delete(ctx context.Context, kind, key string) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOIDC).Delete(oidcKey(kind, key))
	})
	return wrapOIDC("delete "+kind, err)
}

// PurgeExpired deletes every expired record. There are few (auth requests
// that were never finished, codes never exchanged), so a full scan will do.
func (o *OIDCBolt) PurgeExpired(ctx context.Context) (int, error) {
	n := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOIDC).Cursor()
		for k, v := c.First(); k != nil; {
			if o.live(v) == nil {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				k, v = c.Seek(k)
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	return n, wrapOIDC("purge", err)
}

// wrapOIDC passes domain errors (not found, fn's refusals) through and
// turns database failures into 503s.
func wrapOIDC(op string, err error) error {
	if err == nil {
		return nil
	}
	if login.ErrorCode(err) != login.EINTERNAL {
		return err
	}
	return login.ErrUnavailable("oidc "+op, err)
}
