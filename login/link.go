package login

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Confirm links (confirm mode). The WeChat reply to a scan carries a link to
// the confirm page; the link's token is
//
//	<scene id>.<expiry, Unix seconds>.<MAC>
//
// where MAC is HMAC-SHA256 (truncated to 128 bits) over the scene id, the
// openid that scanned, and the expiry. The openid is not in the link (it
// stays on the server): the verifier takes it from the stored scene, so a
// link only works while the scene is held by the person it was sent to.
// Single use and the scene's lifetime are enforced by the scene's state
// machine (scanned → confirmed/denied, expiry); the expiry in the token is a
// second, stateless bound.

// MinLinkKeyLen is the shortest accepted link key, in bytes.
const MinLinkKeyLen = 32

const (
	linkMACLen   = 16
	linkMACLabel = "wxlogin confirm link v1"
	linkKeyLabel = "wxlogin confirm link key v1"
)

// Errors of a link that must not be honoured.
var (
	ErrLinkMalformed = errors.New("confirm link: malformed")
	ErrLinkExpired   = errors.New("confirm link: expired")
	ErrLinkSignature = errors.New("confirm link: bad signature")
)

// LinkSigner signs and checks confirm links. It is pure crypto: no storage,
// no HTTP. Every instance with the same key accepts every instance's links.
type LinkSigner struct {
	key []byte
}

// NewLinkSigner returns a signer with key, which must be at least
// MinLinkKeyLen bytes of secret.
func NewLinkSigner(key []byte) (*LinkSigner, error) {
	if len(key) < MinLinkKeyLen {
		return nil, errors.New("confirm link key: want at least 32 bytes")
	}
	return &LinkSigner{key: append([]byte(nil), key...)}, nil
}

// DeriveLinkKey makes a link key from secrets every instance already shares
// (the WeChat app secret, callback token and AES key), for deployments that
// set no key of their own. Each part is length-prefixed so ("ab","c") and
// ("a","bc") give different keys.
func DeriveLinkKey(secrets ...string) []byte {
	m := hmac.New(sha256.New, []byte(linkKeyLabel))
	for _, s := range secrets {
		m.Write([]byte(strconv.Itoa(len(s)) + ":" + s))
	}
	return m.Sum(nil)
}

// LinkClaim is what a link token says, before its MAC is checked.
type LinkClaim struct {
	SceneID string
	Expires time.Time
	mac     []byte
}

// Token signs a link for the scene sceneID scanned by openID, valid until expires.
func (l *LinkSigner) Token(sceneID, openID string, expires time.Time) string {
	exp := expires.Unix()
	return sceneID + "." + strconv.FormatInt(exp, 10) + "." +
		base64.RawURLEncoding.EncodeToString(l.mac(sceneID, openID, exp))
}

// ParseLinkToken splits a token into its claim. It checks the shape only
// (one canonical spelling per claim: no leading zeros, strict base64);
// Verify checks the MAC and the expiry.
func ParseLinkToken(token string) (LinkClaim, error) {
	if len(token) > 100 {
		return LinkClaim{}, ErrLinkMalformed
	}
	// Only the token alphabet: Go's base64 decoder skips \r and \n, which
	// would give one claim many spellings (found by FuzzParseLinkToken).
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return LinkClaim{}, ErrLinkMalformed
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !ValidSceneID(parts[0]) || len(parts[1]) == 0 || len(parts[1]) > 12 || parts[1][0] == '0' {
		return LinkClaim{}, ErrLinkMalformed
	}
	for _, c := range parts[1] {
		if c < '0' || c > '9' {
			return LinkClaim{}, ErrLinkMalformed
		}
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return LinkClaim{}, ErrLinkMalformed
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(mac) != linkMACLen {
		return LinkClaim{}, ErrLinkMalformed
	}
	return LinkClaim{SceneID: parts[0], Expires: time.Unix(exp, 0).UTC(), mac: mac}, nil
}

// Verify checks that c was signed with this key for openID and has not
// expired at now. The MAC is compared in constant time.
func (l *LinkSigner) Verify(c LinkClaim, openID string, now time.Time) error {
	want := l.mac(c.SceneID, openID, c.Expires.Unix())
	if openID == "" || !hmac.Equal(want, c.mac) {
		return ErrLinkSignature
	}
	if !now.Before(c.Expires) {
		return ErrLinkExpired
	}
	return nil
}

func (l *LinkSigner) mac(sceneID, openID string, exp int64) []byte {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte(linkMACLabel + "\x00" + sceneID + "\x00" + openID + "\x00" + strconv.FormatInt(exp, 10)))
	return m.Sum(nil)[:linkMACLen]
}
