package wechat

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// QueryBindings remembers which body each signed callback query came with.
//
// In plain mode WeChat's signature covers the token, timestamp and nonce,
// never the body: anyone who has seen a callback URL of the last minutes (a
// proxy log, plain-HTTP traffic) could post it again with a body of their own
// — a scan of their own scene carrying someone else's openid. Binding a query
// to the first body it is seen with, for as long as the query is fresh,
// refuses that; WeChat's retries send the same query with the same body and
// are answered as before. In a cluster the bindings must be shared (Redis),
// or the attacker simply posts to another instance.
type QueryBindings interface {
	// BindQuery binds query to bodyHash until the given time, unless query is
	// already bound. It reports whether query is (now) bound to bodyHash:
	// false means it came before with another body.
	BindQuery(ctx context.Context, query string, bodyHash [sha256.Size]byte, until time.Time) (bool, error)
}

// LocalQueryBindings keeps bindings in this process: enough for one
// instance (bbolt), not for a cluster. MarshalBinary and UnmarshalBinary
// carry them over a graceful restart; a crash forgets them (see SECURITY.md
// for why each binding is not written to disk as it is made).
type LocalQueryBindings struct {
	now func() time.Time

	mu    sync.Mutex
	bound map[string]boundBody
	swept time.Time
}

type boundBody struct {
	hash  [sha256.Size]byte
	until time.Time
}

// NewLocalQueryBindings returns empty in-process bindings.
func NewLocalQueryBindings() *LocalQueryBindings {
	return &LocalQueryBindings{now: time.Now, bound: make(map[string]boundBody)}
}

// BindQuery implements QueryBindings.
func (l *LocalQueryBindings) BindQuery(_ context.Context, query string, bodyHash [sha256.Size]byte, until time.Time) (bool, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	if b, ok := l.bound[query]; ok && now.Before(b.until) {
		return b.hash == bodyHash, nil
	}
	l.bound[query] = boundBody{hash: bodyHash, until: until}
	return true, nil
}

// sweepLocked forgets bindings whose query is no longer fresh, at most once
// a second, so the map holds about the last ten minutes of callbacks.
func (l *LocalQueryBindings) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Second {
		return
	}
	l.swept = now
	for k, b := range l.bound {
		if !now.Before(b.until) {
			delete(l.bound, k)
		}
	}
}

// keptBinding is one binding as MarshalBinary writes it.
type keptBinding struct {
	Query string `json:"q"`
	Hash  []byte `json:"h"`
	Until int64  `json:"u"` // Unix seconds
}

// MarshalBinary encodes the bindings still in force, to be kept over a
// restart. It is nil when there is nothing to keep.
func (l *LocalQueryBindings) MarshalBinary() ([]byte, error) {
	now := l.now()
	l.mu.Lock()
	kept := make([]keptBinding, 0, len(l.bound))
	for q, b := range l.bound {
		if now.Before(b.until) {
			kept = append(kept, keptBinding{Query: q, Hash: b.hash[:], Until: b.until.Unix()})
		}
	}
	l.mu.Unlock()
	if len(kept) == 0 {
		return nil, nil
	}
	return json.Marshal(kept)
}

// UnmarshalBinary adds bindings encoded by MarshalBinary, except those no
// longer in force.
func (l *LocalQueryBindings) UnmarshalBinary(data []byte) error {
	var kept []keptBinding
	if err := json.Unmarshal(data, &kept); err != nil {
		return fmt.Errorf("decode kept callback query bindings: %w", err)
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range kept {
		until := time.Unix(k.Until, 0)
		if len(k.Hash) != sha256.Size || !now.Before(until) {
			continue
		}
		var b boundBody
		copy(b.hash[:], k.Hash)
		b.until = until
		l.bound[k.Query] = b
	}
	return nil
}

// Len is how many bindings are held (for tests).
func (l *LocalQueryBindings) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bound)
}
