// Package random makes the unguessable strings wxlogin hands out: scene ids
// and secrets, session tokens, page nonces. It is a leaf: anything may import
// it, and it imports only the standard library.
package random

import (
	"crypto/rand"
	"encoding/base64"
)

// Token returns n bytes from crypto/rand as base64url without padding
// (4 characters for every 3 bytes), safe in URLs, cookies, headers and
// Content-Security-Policy nonces.
func Token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// String returns exactly n random base64url characters, for values whose
// length is fixed by someone else (WeChat's tokens, nonces and openids in
// the stand-in, the demo's callback token).
func String(n int) string {
	return Token((3*n + 3) / 4)[:n]
}
