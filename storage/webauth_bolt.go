package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/login"
)

// Web-authorisation states live in bbolt directly, outside the journal:
// a person starts one at a time, by hand, so one bbolt commit each costs
// nothing, and they need no place in the journal's replay.
var (
	bucketWebAuth    = []byte("webauth_states") // state → JSON {state, used}
	bucketWebAuthDue = []byte("webauth_due")    // dueKey(expiry, state) → nil
)

// webAuthRecord is a state and whether it was taken.
type webAuthRecord struct {
	State *login.WebAuthState `json:"state"`
	Used  bool                `json:"used"`
}

// PutWebAuthState stores a new state, and drops the states that expired.
func (b *Bolt) PutWebAuthState(ctx context.Context, state string, st *login.WebAuthState) error {
	raw, err := json.Marshal(webAuthRecord{State: st})
	if err != nil {
		return wrap("put web authorisation state", err)
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		states, due, err := webAuthBuckets(tx)
		if err != nil {
			return err
		}
		if err := purgeWebAuth(states, due, time.Now()); err != nil {
			return err
		}
		if states.Get([]byte(state)) != nil {
			return login.Errorf(login.ECONFLICT, "web authorisation state exists")
		}
		if err := states.Put([]byte(state), raw); err != nil {
			return err
		}
		return due.Put(dueKey(st.ExpiresAt, state), nil)
	})
	return wrap("put web authorisation state", err)
}

// TakeWebAuthState marks a state used in one bbolt transaction (bbolt runs
// one writer at a time, so exactly one taker finds it unused).
func (b *Bolt) TakeWebAuthState(ctx context.Context, state string) (*login.WebAuthState, bool, error) {
	var rec webAuthRecord
	err := b.db.Update(func(tx *bolt.Tx) error {
		states, _, err := webAuthBuckets(tx)
		if err != nil {
			return err
		}
		raw := states.Get([]byte(state))
		if raw == nil {
			return login.ErrNotFound
		}
		if err := json.Unmarshal(raw, &rec); err != nil || rec.State == nil {
			return login.Errorf(login.EINTERNAL, "undecodable web authorisation state")
		}
		if rec.Used {
			return nil
		}
		used := webAuthRecord{State: rec.State, Used: true}
		out, err := json.Marshal(used)
		if err != nil {
			return err
		}
		return states.Put([]byte(state), out)
	})
	if err != nil {
		return nil, false, wrap("take web authorisation state", err)
	}
	return rec.State, rec.Used, nil
}

func webAuthBuckets(tx *bolt.Tx) (states, due *bolt.Bucket, err error) {
	if states, err = tx.CreateBucketIfNotExists(bucketWebAuth); err != nil {
		return nil, nil, err
	}
	if due, err = tx.CreateBucketIfNotExists(bucketWebAuthDue); err != nil {
		return nil, nil, err
	}
	return states, due, nil
}

// purgeWebAuth deletes the states that expired before now, oldest first.
func purgeWebAuth(states, due *bolt.Bucket, now time.Time) error {
	limit := dueKey(now, "")
	c := due.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.First() {
		if err := states.Delete(k[8:]); err != nil {
			return err
		}
		if err := due.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
