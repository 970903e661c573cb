package oidcprovider

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"wxlogin/login"
)

// The key set is one record, shared by every instance: the RS256 signing
// keys (the newest signs; older ones stay published until the tokens they
// signed have expired) and the secret that encrypts codes and access tokens.
const (
	kindKeys = "keys"
	keySetID = "set"
	rsaBits  = 2048
	// keyReload is how long an instance signs with the key set it read
	// before reading it again, so a rotation made elsewhere reaches it.
	keyReload = time.Minute
)

// RetireAfter is how long a replaced key stays in the JWKS: every token it
// signed (ID tokens, and access tokens, which are checked by decryption but
// count here too) has expired by then, with room for instances that have not
// reloaded yet.
const RetireAfter = idTokenTTL + accessTokenTTL + keyReload

type storedKey struct {
	ID         string    `json:"kid"`
	PrivateDER []byte    `json:"private_der"` // PKCS #8
	CreatedAt  time.Time `json:"created_at"`
	RetiresAt  time.Time `json:"retires_at,omitzero"` // zero: the current signing key
}

type storedKeySet struct {
	CryptoKey []byte      `json:"crypto_key"` // 32 bytes: codes and access tokens (AES-GCM)
	Keys      []storedKey `json:"keys"`       // newest first
}

// keyRing reads and caches the stored key set.
type keyRing struct {
	records Records
	now     func() time.Time
	// ensure makes the key set if it could not be made at start (Redis down).
	ensure func(context.Context) error

	mu       sync.Mutex
	signer   *signingKey
	loadedAt time.Time
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k *publicKey) ID() string                         { return k.id }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *publicKey) Use() string                        { return "sig" }
func (k *publicKey) Key() any                           { return k.key }

// ensureKeySet returns the stored key set, making it when this is the first
// start. Two instances starting at once both make one; the store keeps the
// first (Add) and the other reads it back.
func ensureKeySet(ctx context.Context, records Records, now time.Time) (*storedKeySet, error) {
	set, err := readKeySet(ctx, records)
	if err == nil {
		return set, nil
	}
	if !errors.Is(err, login.ErrNotFound) {
		return nil, err
	}
	fresh, err := newKeySet(now)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(fresh)
	if err != nil {
		return nil, err
	}
	if _, err := records.Add(ctx, kindKeys, keySetID, raw, time.Time{}); err != nil {
		return nil, fmt.Errorf("store the OIDC signing keys: %w", err)
	}
	return readKeySet(ctx, records)
}

func readKeySet(ctx context.Context, records Records) (*storedKeySet, error) {
	raw, err := records.Get(ctx, kindKeys, keySetID)
	if err != nil {
		return nil, err
	}
	set := new(storedKeySet)
	if err := json.Unmarshal(raw, set); err != nil {
		return nil, fmt.Errorf("decode the OIDC key set: %w", err)
	}
	if len(set.CryptoKey) != 32 || len(set.Keys) == 0 {
		return nil, errors.New("the stored OIDC key set is incomplete")
	}
	return set, nil
}

func newKeySet(now time.Time) (*storedKeySet, error) {
	k, err := newStoredKey(now)
	if err != nil {
		return nil, err
	}
	set := &storedKeySet{CryptoKey: make([]byte, 32), Keys: []storedKey{k}}
	if _, err := rand.Read(set.CryptoKey); err != nil {
		return nil, err
	}
	return set, nil
}

func newStoredKey(now time.Time) (storedKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return storedKey{}, fmt.Errorf("generate an RSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return storedKey{}, err
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	return storedKey{ID: base64.RawURLEncoding.EncodeToString(id), PrivateDER: der, CreatedAt: now.UTC()}, nil
}

// RotateKeys makes a new signing key, which signs from now on (on other
// instances within keyReload); the previous one stays in the JWKS for
// RetireAfter, and keys retired before now are dropped. It returns the new
// key's id.
func RotateKeys(ctx context.Context, records Records, now time.Time) (string, error) {
	if _, err := ensureKeySet(ctx, records, now); err != nil {
		return "", err
	}
	fresh, err := newStoredKey(now)
	if err != nil {
		return "", err
	}
	err = records.Update(ctx, kindKeys, keySetID, func(old []byte) ([]byte, error) {
		set := new(storedKeySet)
		if err := json.Unmarshal(old, set); err != nil {
			return nil, fmt.Errorf("decode the OIDC key set: %w", err)
		}
		keys := []storedKey{fresh}
		for _, k := range set.Keys {
			if k.RetiresAt.IsZero() {
				k.RetiresAt = now.Add(RetireAfter).UTC()
			}
			if k.RetiresAt.After(now) {
				keys = append(keys, k)
			}
		}
		set.Keys = keys
		return json.Marshal(set)
	})
	if err != nil {
		return "", fmt.Errorf("rotate the OIDC signing keys: %w", err)
	}
	return fresh.ID, nil
}

// signingKey is the newest key of the stored set, read again every keyReload.
func (r *keyRing) signingKey(ctx context.Context) (*signingKey, error) {
	if err := r.ensure(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.signer != nil && now.Sub(r.loadedAt) < keyReload {
		return r.signer, nil
	}
	set, err := readKeySet(ctx, r.records)
	if err != nil {
		if r.signer != nil { // the store is down: keep signing with the key we have
			return r.signer, nil
		}
		return nil, err
	}
	priv, err := parseKey(set.Keys[0])
	if err != nil {
		return nil, err
	}
	r.signer, r.loadedAt = &signingKey{id: set.Keys[0].ID, key: priv}, now
	return r.signer, nil
}

// publicKeys are the keys of the JWKS, read from the store on every call so
// that a key made by another instance is published everywhere at once.
func (r *keyRing) publicKeys(ctx context.Context) ([]op.Key, error) {
	if err := r.ensure(ctx); err != nil {
		return nil, err
	}
	set, err := readKeySet(ctx, r.records)
	if err != nil {
		return nil, err
	}
	now := r.now()
	var out []op.Key
	for _, k := range set.Keys {
		if !k.RetiresAt.IsZero() && !now.Before(k.RetiresAt) {
			continue
		}
		priv, err := parseKey(k)
		if err != nil {
			return nil, err
		}
		out = append(out, &publicKey{id: k.ID, key: &priv.PublicKey})
	}
	return out, nil
}

func parseKey(k storedKey) (*rsa.PrivateKey, error) {
	key, err := x509.ParsePKCS8PrivateKey(k.PrivateDER)
	if err != nil {
		return nil, fmt.Errorf("decode OIDC key %s: %w", k.ID, err)
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("OIDC key %s is a %T, not RSA", k.ID, key)
	}
	return priv, nil
}
