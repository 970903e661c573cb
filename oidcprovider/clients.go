package oidcprovider

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// ClientConfig is one entry of the WXLOGIN_OIDC_CLIENTS file.
type ClientConfig struct {
	ClientID               string   `json:"client_id"`
	ClientSecret           string   `json:"client_secret,omitempty"` // "" = a public client, which must use PKCE
	Name                   string   `json:"name"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
}

// LoadClients reads and checks the client file at path. Every error names the
// file, and the entry when it is about one.
func LoadClients(path string) ([]ClientConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("WXLOGIN_OIDC_CLIENTS: %w", err)
	}
	clients, err := ParseClients(data)
	if err != nil {
		return nil, fmt.Errorf("WXLOGIN_OIDC_CLIENTS %s: %w", path, err)
	}
	return clients, nil
}

// ParseClients decodes a client file: a JSON array of ClientConfig. Unknown
// fields, a missing client_id or redirect URI, duplicates and redirect URIs
// that are not absolute are errors naming the entry.
func ParseClients(data []byte) ([]ClientConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var clients []ClientConfig
	if err := dec.Decode(&clients); err != nil {
		return nil, fmt.Errorf("not a JSON array of clients: %w", err)
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the array of clients")
	}
	seen := map[string]bool{}
	for i, c := range clients {
		entry := fmt.Sprintf("entry %d", i+1)
		if c.ClientID != "" {
			entry = fmt.Sprintf("entry %d (client_id %q)", i+1, c.ClientID)
		}
		if err := checkClient(c, seen); err != nil {
			return nil, fmt.Errorf("%s: %w", entry, err)
		}
		if clients[i].Name == "" {
			clients[i].Name = c.ClientID
		}
	}
	return clients, nil
}

func checkClient(c ClientConfig, seen map[string]bool) error {
	switch {
	case c.ClientID == "":
		return errors.New("client_id is missing")
	case strings.ContainsAny(c.ClientID, ": \t\r\n"):
		return errors.New("client_id must not contain ':' or white space")
	case seen[c.ClientID]:
		return errors.New("duplicate client_id")
	case len(c.RedirectURIs) == 0:
		return errors.New("redirect_uris is empty")
	}
	seen[c.ClientID] = true
	for _, list := range []struct {
		name string
		uris []string
	}{{"redirect_uris", c.RedirectURIs}, {"post_logout_redirect_uris", c.PostLogoutRedirectURIs}} {
		dup := map[string]bool{}
		for _, u := range list.uris {
			if err := absoluteURI(u); err != nil {
				return fmt.Errorf("%s: %q %w", list.name, u, err)
			}
			if dup[u] {
				return fmt.Errorf("%s: %q listed twice", list.name, u)
			}
			dup[u] = true
		}
	}
	return nil
}

// absoluteURI accepts what RFC 6749 §3.1.2 allows a redirect URI to be: absolute, without a fragment.
func absoluteURI(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a URI")
	case !u.IsAbs() || (u.Host == "" && u.Opaque == "" && u.Path == ""):
		return errors.New("is not an absolute URI")
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host == "":
		return errors.New("has no host")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not have a fragment")
	}
	return nil
}

// client is a registered relying party, as op sees it.
type client struct {
	cfg        ClientConfig
	secretHash [32]byte
	loginURL   func(id string) string
}

func newClient(cfg ClientConfig, loginURL func(string) string) *client {
	c := &client{cfg: cfg, loginURL: loginURL}
	if cfg.ClientSecret != "" {
		c.secretHash = sha256.Sum256([]byte(cfg.ClientSecret))
	}
	return c
}

func (c *client) public() bool { return c.cfg.ClientSecret == "" }

// secretMatches compares in constant time; hashing first makes the time
// independent of the secrets' lengths too.
func (c *client) secretMatches(secret string) bool {
	if c.public() {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], c.secretHash[:]) == 1
}

func (c *client) GetID() string                    { return c.cfg.ClientID }
func (c *client) RedirectURIs() []string           { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.cfg.PostLogoutRedirectURIs }

// ApplicationType: a public client is "native" to op, which then accepts its
// registered URIs (https, custom schemes, and http on loopback with any port,
// RFC 8252) and nothing else; a confidential client is "web".
func (c *client) ApplicationType() op.ApplicationType {
	if c.public() {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// AuthMethod is what op checks at the token endpoint. For a confidential
// client op takes the secret from Basic or from the form alike
// (Config.AuthMethodPost), so client_secret_basic covers both.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public() {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *client) LoginURL(id string) string    { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return idTokenTTL }
func (c *client) DevMode() bool                  { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed allows nothing beyond the standard scopes op already keeps.
func (c *client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion puts the profile claims (name, login_count)
// in the ID token itself, as the SPEC's claims list asks, not only at userinfo.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
