package random

import (
	"encoding/base64"
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
