package oidcprovider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"wxlogin/login"
)

// ErrKeysDiffer is returned by PlanKeysMove when the target already holds
// another key set and replacing it was not asked for.
var ErrKeysDiffer = errors.New("the target holds other OpenID Connect keys")

// KeysMove carries the key set (signing keys, current and previous with
// their retirement times, and the code/token secret) to another store, so
// tokens issued before a move still verify after it and the JWKS stays the
// same. Auth requests and codes in flight are not moved: they live minutes.
type KeysMove struct {
	raw []byte // nil: nothing to write
	to  Records
	// Found and Same say what was seen: a key set in the source; the same one in the target.
	Found, Same bool
}

// PlanKeysMove looks at both stores and decides, writing nothing: a target
// with another key set is refused (ErrKeysDiffer) unless replace, because
// replacing it breaks the tokens the target's own keys signed.
func PlanKeysMove(ctx context.Context, from, to Records, replace bool) (*KeysMove, error) {
	m := &KeysMove{to: to}
	src, err := from.Get(ctx, kindKeys, keySetID)
	if errors.Is(err, login.ErrNotFound) {
		return m, nil // OpenID Connect never ran on the source
	}
	if err != nil {
		return nil, fmt.Errorf("read the source's OIDC keys: %w", err)
	}
	if _, err := decodeKeySet(src); err != nil {
		return nil, fmt.Errorf("the source's OIDC keys: %w", err)
	}
	m.Found = true
	dst, err := to.Get(ctx, kindKeys, keySetID)
	switch {
	case errors.Is(err, login.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read the target's OIDC keys: %w", err)
	case bytes.Equal(src, dst):
		m.Same = true
		return m, nil
	case !replace:
		return nil, ErrKeysDiffer
	}
	m.raw = src
	return m, nil
}

// Apply writes the key set; it reports whether it wrote.
func (m *KeysMove) Apply(ctx context.Context) (bool, error) {
	if m.raw == nil {
		return false, nil
	}
	if err := m.to.Put(ctx, kindKeys, keySetID, m.raw, time.Time{}); err != nil {
		return false, fmt.Errorf("write the OIDC keys: %w", err)
	}
	return true, nil
}
