package oidcprovider

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"wxlogin/internal/random"
	"wxlogin/login"
)

// Records is the little the provider needs from a store: expiring records
// by kind and key, with an atomic take for single-use codes. storage.OIDCBolt
// and storage.OIDCRedis implement it.
type Records interface {
	Put(ctx context.Context, kind, key string, value []byte, expires time.Time) error
	Add(ctx context.Context, kind, key string, value []byte, expires time.Time) (bool, error)
	Get(ctx context.Context, kind, key string) ([]byte, error) // login.ErrNotFound when missing
	Take(ctx context.Context, kind, key string) ([]byte, error)
	Update(ctx context.Context, kind, key string, fn func(old []byte) ([]byte, error)) error
	Delete(ctx context.Context, kind, key string) error
	PurgeExpired(ctx context.Context) (int, error)
}

// Users is what the provider reads of wxlogin's own data: sessions (single
// sign-on, auth_time) and users (claims). login.Store implements it.
type Users interface {
	Session(ctx context.Context, tokenHash string) (*login.Session, error)
	User(ctx context.Context, openID string) (*login.User, error)
}

// Lifetimes.
const (
	authRequestTTL = 30 * time.Minute // a person may refresh the QR code a few times
	codeTTL        = 5 * time.Minute  // as wxlogin's own one-time code
	idTokenTTL     = time.Hour
	accessTokenTTL = time.Hour
	purgeEvery     = time.Minute
)

const (
	kindAuthRequest = "authreq"
	kindCode        = "code"
)

// authRequest is one authorization request, from /authorize until its code
// is exchanged (or it expires).
type authRequest struct {
	ID                  string                   `json:"id"`
	ClientID            string                   `json:"client_id"`
	RedirectURI         string                   `json:"redirect_uri"`
	State               string                   `json:"state,omitempty"`
	Nonce               string                   `json:"nonce,omitempty"`
	Scopes              []string                 `json:"scopes"`
	ResponseType        oidc.ResponseType        `json:"response_type"`
	ResponseMode        oidc.ResponseMode        `json:"response_mode,omitempty"`
	CodeChallenge       string                   `json:"code_challenge,omitempty"`
	CodeChallengeMethod oidc.CodeChallengeMethod `json:"code_challenge_method,omitempty"`
	Prompt              []string                 `json:"prompt,omitempty"`
	MaxAge              *uint                    `json:"max_age,omitempty"`
	CreatedAt           time.Time                `json:"created_at"`

	// Set when the person has logged in.
	UserID     string    `json:"user_id,omitempty"`
	OpenID     string    `json:"openid,omitempty"` // stays on the server, as everywhere
	AuthTime   time.Time `json:"auth_time,omitzero"`
	Finished   bool      `json:"done,omitempty"`
	CodeIssued bool      `json:"code_issued,omitempty"`
}

func (a *authRequest) GetID() string         { return a.ID }
func (a *authRequest) GetACR() string        { return "" }
func (a *authRequest) GetAMR() []string      { return nil }
func (a *authRequest) GetAudience() []string { return []string{a.ClientID} }
func (a *authRequest) GetAuthTime() time.Time {
	return a.AuthTime
}
func (a *authRequest) GetClientID() string { return a.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.CodeChallenge, Method: a.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                   { return a.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.Scopes }
func (a *authRequest) GetState() string                   { return a.State }
func (a *authRequest) GetSubject() string                 { return a.UserID }
func (a *authRequest) Done() bool                         { return a.Finished }

func (a *authRequest) promptLogin() bool { return slices.Contains(a.Prompt, oidc.PromptLogin) }
func (a *authRequest) promptNone() bool  { return slices.Contains(a.Prompt, oidc.PromptNone) }

// sessionSatisfies reports whether a session may finish this request without
// a new scan: a session made after the request began always does (the person
// just scanned for it); an older one only without prompt=login and within
// max_age (op turns prompt=login into max_age=0).
func (a *authRequest) sessionSatisfies(s *login.Session, now time.Time) bool {
	if !s.CreatedAt.Before(a.CreatedAt) {
		return true
	}
	if a.promptLogin() {
		return false
	}
	return a.MaxAge == nil || now.Sub(s.CreatedAt) <= time.Duration(*a.MaxAge)*time.Second
}

// store implements op.Storage on Records and wxlogin's users.
type store struct {
	records  Records
	users    Users
	clients  map[string]*client
	keys     *keyRing
	now      func() time.Time
	lastPurg atomic.Int64 // UnixNano of the last purge
}

var (
	_ op.Storage                   = (*store)(nil)
	_ op.CanSetUserinfoFromRequest = (*store)(nil)
)

func (s *store) client(id string) (*client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return c, nil
}

// CreateAuthRequest keeps a validated request. It refuses what op lets
// through: a public client without PKCE (op would find out only at the token
// endpoint, after issuing a code) and any method but S256.
func (s *store) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	c, err := s.client(req.ClientID)
	if err != nil {
		return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("unknown client")
	}
	if req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if c.public() && req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE (code_challenge with S256) is required for this client")
	}
	if !slices.Contains(req.Scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("the openid scope is required")
	}
	now := s.now().UTC()
	s.purgeNow(ctx, now)
	a := &authRequest{
		ID: random.Token(18), ClientID: req.ClientID, RedirectURI: req.RedirectURI, State: req.State,
		Nonce: req.Nonce, Scopes: req.Scopes, ResponseType: req.ResponseType, ResponseMode: req.ResponseMode,
		CodeChallenge: req.CodeChallenge, CodeChallengeMethod: req.CodeChallengeMethod,
		Prompt: req.Prompt, MaxAge: req.MaxAge, CreatedAt: now,
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if err := s.records.Put(ctx, kindAuthRequest, a.ID, raw, now.Add(authRequestTTL)); err != nil {
		return nil, err
	}
	return a, nil
}

// purgeNow removes expired records at most once per purgeEvery (bbolt keeps
// them until then; Redis expires them itself).
func (s *store) purgeNow(ctx context.Context, now time.Time) {
	last := s.lastPurg.Load()
	if now.Sub(time.Unix(0, last)) < purgeEvery || !s.lastPurg.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	_, _ = s.records.PurgeExpired(ctx)
}

func (s *store) authRequest(ctx context.Context, id string) (*authRequest, error) {
	raw, err := s.records.Get(ctx, kindAuthRequest, id)
	if err != nil {
		return nil, err
	}
	a := new(authRequest)
	if err := json.Unmarshal(raw, a); err != nil {
		return nil, fmt.Errorf("decode auth request: %w", err)
	}
	return a, nil
}

func (s *store) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	return s.authRequest(ctx, id)
}

// finish records who logged in for the request; a request is finished once.
func (s *store) finish(ctx context.Context, id string, sess *login.Session) error {
	return s.records.Update(ctx, kindAuthRequest, id, func(old []byte) ([]byte, error) {
		a := new(authRequest)
		if err := json.Unmarshal(old, a); err != nil {
			return nil, err
		}
		if a.Finished {
			return nil, login.Errorf(login.ECONFLICT, "this login request is already finished")
		}
		a.Finished, a.UserID, a.OpenID, a.AuthTime = true, sess.UserID, sess.OpenID, sess.CreatedAt.UTC()
		return json.Marshal(a)
	})
}

// SaveAuthCode links a code to its request. A request gets one code: a
// replayed callback cannot mint a second one.
func (s *store) SaveAuthCode(ctx context.Context, id, code string) error {
	err := s.records.Update(ctx, kindAuthRequest, id, func(old []byte) ([]byte, error) {
		a := new(authRequest)
		if err := json.Unmarshal(old, a); err != nil {
			return nil, err
		}
		if a.CodeIssued {
			return nil, oidc.ErrInvalidRequest().WithDescription("a code was already issued for this request")
		}
		a.CodeIssued = true
		return json.Marshal(a)
	})
	if err != nil {
		return err
	}
	return s.records.Put(ctx, kindCode, codeKey(code), []byte(id), s.now().Add(codeTTL))
}

// AuthRequestByCode consumes the code: it is taken from the store atomically,
// so of two requests with the same code only one finds it (op deletes the
// auth request only after the tokens are made, too late to stop a race).
func (s *store) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	id, err := s.records.Take(ctx, kindCode, codeKey(code))
	if err != nil {
		return nil, err
	}
	a, err := s.authRequest(ctx, string(id))
	if err != nil {
		return nil, err
	}
	if !a.Finished {
		return nil, errors.New("auth request not finished")
	}
	return a, nil
}

func (s *store) DeleteAuthRequest(ctx context.Context, id string) error {
	return s.records.Delete(ctx, kindAuthRequest, id)
}

// CreateAccessToken makes an access token id that carries what userinfo
// needs: expiry, whether profile claims were granted, and the openid to find
// the user by. op encrypts "<id>:<subject>" under the key set's secret, so
// the token is opaque to its holder and nothing needs storing.
func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	a, ok := req.(*authRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	exp := s.now().Add(accessTokenTTL).UTC()
	id := strings.Join([]string{strconv.FormatInt(exp.Unix(), 10), claimSet(a.Scopes).flags(),
		base64.RawURLEncoding.EncodeToString([]byte(a.OpenID)), random.Token(18)}, ".")
	return id, exp, nil
}

// claims says which optional claims were granted: profile (name,
// login_count) and unionid.
type claims struct{ profile, unionID bool }

func claimSet(scopes []string) claims {
	return claims{profile: slices.Contains(scopes, oidc.ScopeProfile), unionID: slices.Contains(scopes, ScopeUnionID)}
}

// flags is how claims travel in an access token id: "o" for none (the
// original form), "p" for profile, "u" for unionid.
func (c claims) flags() string {
	f := ""
	if c.profile {
		f += "p"
	}
	if c.unionID {
		f += "u"
	}
	if f == "" {
		f = "o"
	}
	return f
}

type accessTokenID struct {
	expires time.Time
	claims  claims
	openID  string
}

func parseAccessTokenID(id string) (accessTokenID, error) {
	parts := strings.Split(id, ".")
	if len(parts) != 4 {
		return accessTokenID{}, errors.New("malformed token id")
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return accessTokenID{}, errors.New("malformed token id")
	}
	openID, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(openID) == 0 {
		return accessTokenID{}, errors.New("malformed token id")
	}
	return accessTokenID{expires: time.Unix(exp, 0), openID: string(openID),
		claims: claims{profile: strings.Contains(parts[1], "p"), unionID: strings.Contains(parts[1], "u")}}, nil
}

// Refresh tokens are not offered (no client has the grant): a relying party
// sends the browser through /authorize again, which single sign-on makes
// silent while the wxlogin session lasts.
func (s *store) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("refresh tokens are not offered")
}

func (s *store) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *store) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// TerminateSession is not used: TerminateSessionFromRequest (provider.go) is.
func (s *store) TerminateSession(context.Context, string, string) error { return nil }

// RevokeToken is not routed (see Register): access tokens are not stored, so they cannot be revoked one by
// one; they live an hour.
func (s *store) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrInvalidRequest().WithDescription("revocation is not offered: access tokens expire on their own and refresh tokens are not issued")
}

func (s *store) SigningKey(ctx context.Context) (op.SigningKey, error) { return s.keys.signingKey(ctx) }

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *store) KeySet(ctx context.Context) ([]op.Key, error) { return s.keys.publicKeys(ctx) }

func (s *store) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	return s.client(id)
}

// AuthorizeClientIDSecret compares in constant time (client.secretMatches)
// and never logs the secret.
func (s *store) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, err := s.client(id)
	if err != nil {
		return err
	}
	if !c.secretMatches(secret) {
		return errors.New("wrong client secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does the work.
func (s *store) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims. It must set Subject:
// op copies the whole UserInfo over the token's claims.
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	a, ok := req.(*authRequest)
	if !ok {
		return oidc.ErrServerError()
	}
	return s.fillUserinfo(ctx, info, a.OpenID, a.UserID, claimSet(scopes))
}

// SetUserinfoFromToken answers userinfo for an access token.
func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := parseAccessTokenID(tokenID)
	if err != nil {
		return oidc.ErrInvalidRequest().WithDescription("invalid access token")
	}
	if !s.now().Before(t.expires) {
		return oidc.ErrInvalidRequest().WithDescription("the access token has expired")
	}
	return s.fillUserinfo(ctx, info, t.openID, subject, t.claims)
}

// fillUserinfo sets the claims of the user the token was issued for. A user
// who was deleted (admin DELETE) is refused, and so is a new user of the same
// person (another id): a deleted person's data is never served, even to a
// token issued before the deletion.
func (s *store) fillUserinfo(ctx context.Context, info *oidc.UserInfo, openID, subject string, granted claims) error {
	u, err := s.users.User(ctx, openID)
	if errors.Is(err, login.ErrNotFound) || (err == nil && u.ID != subject) {
		return oidc.ErrInvalidRequest().WithDescription("the user no longer exists")
	}
	if err != nil {
		return err
	}
	info.Subject = u.ID
	if granted.profile {
		info.Name = u.Name
		info.AppendClaims("login_count", u.LoginCount)
	}
	if granted.unionID && u.UnionID != "" {
		info.AppendClaims("unionid", u.UnionID)
	}
	return nil
}

// SetIntrospectionFromToken answers introspection for an access token.
func (s *store) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, err := parseAccessTokenID(tokenID)
	if err != nil || !s.now().Before(t.expires) {
		return errors.New("inactive token")
	}
	info := new(oidc.UserInfo)
	if err := s.fillUserinfo(ctx, info, t.openID, subject, t.claims); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Active = true
	resp.ClientID = clientID
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *store) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID refuses: op always routes the jwt-bearer grant and
// private_key_jwt here, and wxlogin offers neither.
func (s *store) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT client assertions are not accepted")
}

func (s *store) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not offered")
}

func (s *store) Health(ctx context.Context) error {
	_, err := s.records.Get(ctx, kindKeys, keySetID)
	return err
}

// codeKey is how a code is stored: its hash, so the store never holds a
// usable code.
func codeKey(code string) string {
	h := sha256.Sum256([]byte(code))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
