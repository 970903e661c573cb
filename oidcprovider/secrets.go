package oidcprovider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// secrets are the key set's symmetric parts: op's Crypto (AES-256-GCM, codes
// and access tokens) and the MAC key of browser bindings and logout links.
// They are read from the store at first use, not at start: an instance that
// starts while Redis is down must come up (not ready) and work once Redis
// answers, as the rest of wxlogin does.
type secrets struct {
	records Records
	now     func() time.Time

	mu     sync.Mutex
	crypto op.Crypto
	macKey []byte
}

// load reads (or at the very first start makes) the key set once.
func (s *secrets) load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crypto != nil {
		return nil
	}
	set, err := ensureKeySet(ctx, s.records, s.now())
	if err != nil {
		return err
	}
	var key [32]byte
	copy(key[:], set.CryptoKey)
	mac := hmac.New(sha256.New, set.CryptoKey)
	mac.Write([]byte("wxlogin oidc browser binding"))
	s.crypto, s.macKey = op.NewAES256GCMCrypto(key, "1"), mac.Sum(nil)
	return nil
}

// loadTimeout bounds a first use that has to reach the store.
const loadTimeout = 3 * time.Second

func (s *secrets) ready() (op.Crypto, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := s.load(ctx); err != nil {
		return nil, nil, err
	}
	return s.crypto, s.macKey, nil
}

// Encrypt and Decrypt make secrets an op.Crypto (op.WithCrypto).
func (s *secrets) Encrypt(v string) (string, error) {
	c, _, err := s.ready()
	if err != nil {
		return "", err
	}
	return c.Encrypt(v)
}

func (s *secrets) Decrypt(v string) (string, error) {
	c, _, err := s.ready()
	if err != nil {
		return "", err
	}
	return c.Decrypt(v)
}
