package login_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
)

const testScene = "AAAAAAAAAAAAAAAAAAAAAA"

func mustSigner(t testing.TB, key []byte) *login.LinkSigner {
	t.Helper()
	s, err := login.NewLinkSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLinkSignAndVerify(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	key := login.DeriveLinkKey("app-secret", "callback-token", "")
	signer := mustSigner(t, key)
	tok := signer.Token(testScene, "oALICE", now.Add(2*time.Minute))

	claim, err := login.ParseLinkToken(tok)
	if err != nil {
		t.Fatalf("parse own token %q: %v", tok, err)
	}
	if claim.SceneID != testScene || !claim.Expires.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("claim = %+v", claim)
	}
	// Another instance with the same configuration accepts the link.
	other := mustSigner(t, login.DeriveLinkKey("app-secret", "callback-token", ""))
	if err := other.Verify(claim, "oALICE", now); err != nil {
		t.Fatalf("same key on another instance: %v", err)
	}

	tests := []struct {
		name   string
		signer *login.LinkSigner
		openID string
		now    time.Time
		want   error
	}{
		{"other openid", signer, "oMALLORY", now, login.ErrLinkSignature},
		{"empty openid", signer, "", now, login.ErrLinkSignature},
		{"other key", mustSigner(t, login.DeriveLinkKey("other-secret", "callback-token", "")), "oALICE", now, login.ErrLinkSignature},
		{"at expiry", signer, "oALICE", now.Add(2 * time.Minute), login.ErrLinkExpired},
		{"after expiry", signer, "oALICE", now.Add(time.Hour), login.ErrLinkExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.signer.Verify(claim, tt.openID, tt.now); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLinkTamperedClaimsFail(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	signer := mustSigner(t, bytes.Repeat([]byte("k"), 32))
	tok := signer.Token(testScene, "oALICE", now.Add(time.Minute))
	parts := strings.Split(tok, ".")

	tampered := map[string]string{
		"longer expiry": parts[0] + "." + "1900000000" + "." + parts[2],
		"other scene":   "BAAAAAAAAAAAAAAAAAAAAA." + parts[1] + "." + parts[2],
		"flipped mac":   parts[0] + "." + parts[1] + "." + flipFirst(parts[2]),
	}
	for name, tok := range tampered {
		t.Run(name, func(t *testing.T) {
			c, err := login.ParseLinkToken(tok)
			if err != nil {
				t.Fatalf("a well-formed token must parse: %v", err)
			}
			if err := signer.Verify(c, "oALICE", now); !errors.Is(err, login.ErrLinkSignature) {
				t.Fatalf("Verify = %v, want ErrLinkSignature", err)
			}
		})
	}
}

func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestParseLinkTokenRejectsJunk(t *testing.T) {
	signer := mustSigner(t, bytes.Repeat([]byte("k"), 32))
	good := signer.Token(testScene, "o1", time.Unix(1_700_000_000, 0))
	parts := strings.Split(good, ".")
	for _, tok := range []string{
		"",
		"..",
		good + ".x",
		"short." + parts[1] + "." + parts[2],
		parts[0] + ".-5." + parts[2],
		parts[0] + ".+5." + parts[2],
		parts[0] + ".1234567890123." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + "A",
		parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1],
		parts[0] + "." + parts[1] + "." + strings.Repeat("A", 200),
		parts[0] + "." + parts[1] + "." + parts[2][:4] + "\r\n" + parts[2][4:], // base64 skips newlines
		parts[0] + "." + parts[1] + "." + parts[2][:4] + "=" + parts[2][4:],
	} {
		if _, err := login.ParseLinkToken(tok); !errors.Is(err, login.ErrLinkMalformed) {
			t.Errorf("ParseLinkToken(%q) = %v, want ErrLinkMalformed", tok, err)
		}
	}
}

func TestLinkKeyRules(t *testing.T) {
	if _, err := login.NewLinkSigner(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
	a := login.DeriveLinkKey("ab", "c")
	b := login.DeriveLinkKey("a", "bc")
	if bytes.Equal(a, b) {
		t.Fatal("DeriveLinkKey is ambiguous across part boundaries")
	}
	if !bytes.Equal(a, login.DeriveLinkKey("ab", "c")) {
		t.Fatal("DeriveLinkKey is not deterministic")
	}
	if len(a) < login.MinLinkKeyLen {
		t.Fatalf("derived key is %d bytes", len(a))
	}
}
