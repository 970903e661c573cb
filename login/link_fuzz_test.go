package login_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"wxlogin/login"
)

// FuzzParseLinkToken: junk never panics, and whatever parses re-signs to a
// token of the same shape; a token verifies only with the right openid.
func FuzzParseLinkToken(f *testing.F) {
	signer := mustSigner(f, bytes.Repeat([]byte("k"), 32))
	f.Add(signer.Token(testScene, "oALICE", time.Unix(1_700_000_000, 0)))
	f.Add("AAAAAAAAAAAAAAAAAAAAAA.1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := login.ParseLinkToken(tok)
		if err != nil {
			if !errors.Is(err, login.ErrLinkMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !login.ValidSceneID(c.SceneID) {
			t.Fatalf("parsed an invalid scene id %q", c.SceneID)
		}
		// A parsed junk token must not verify (the MAC is 128 bits).
		if signer.Verify(c, "oALICE", time.Unix(0, 0)) == nil && tok != signer.Token(c.SceneID, "oALICE", c.Expires) {
			t.Fatalf("a token not made by the signer verified: %q", tok)
		}
	})
}
