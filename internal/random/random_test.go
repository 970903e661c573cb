package random

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int{12, 16, 18, 32} {
		for range 100 {
			tok := Token(n)
			raw, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				t.Fatalf("Token(%d) = %q is not base64url: %v", n, tok, err)
			}
			if len(raw) != n {
				t.Fatalf("Token(%d) = %q holds %d bytes", n, tok, len(raw))
			}
			if seen[tok] {
				t.Fatalf("Token(%d) repeated %q", n, tok)
			}
			seen[tok] = true
		}
	}
}

func TestString(t *testing.T) {
	for n := range 40 {
		s := String(n)
		if len(s) != n {
			t.Fatalf("String(%d) has %d characters: %q", n, len(s), s)
		}
		for _, c := range s {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", c) {
				t.Fatalf("String(%d) = %q has %q", n, s, c)
			}
		}
	}
}
