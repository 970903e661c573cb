package oidcprovider

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseClients: junk never panics, and whatever is accepted keeps the
// promises the provider relies on: unique ids without ':', at least one
// redirect URI, every URI absolute without a fragment, a name.
func FuzzParseClients(f *testing.F) {
	f.Add(`[{"client_id":"grafana","client_secret":"s","name":"Grafana","redirect_uris":["https://g.example.com/cb"],"post_logout_redirect_uris":[]}]`)
	f.Add(`[{"client_id":"app","redirect_uris":["com.example.app:/cb","http://127.0.0.1/cb"]}]`)
	f.Add(`[{"client_id":"a","redirect_uris":["/cb"]}]`)
	f.Add(`[{"client_id":"a","redirect_uris":["https://a/cb#x"]},{"client_id":"a","redirect_uris":["https://b"]}]`)
	f.Add(`[] []`)
	f.Add(`{"client_id":"a"}`)
	f.Fuzz(func(t *testing.T, data string) {
		clients, err := ParseClients([]byte(data))
		if err != nil {
			if clients != nil {
				t.Fatal("clients returned with an error")
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range clients {
			if c.ClientID == "" || strings.Contains(c.ClientID, ":") || seen[c.ClientID] {
				t.Fatalf("accepted client id %q", c.ClientID)
			}
			seen[c.ClientID] = true
			if c.Name == "" || len(c.RedirectURIs) == 0 {
				t.Fatalf("accepted %+v", c)
			}
			for _, raw := range append(append([]string{}, c.RedirectURIs...), c.PostLogoutRedirectURIs...) {
				u, err := url.Parse(raw)
				if err != nil || !u.IsAbs() || strings.Contains(raw, "#") {
					t.Fatalf("accepted redirect URI %q", raw)
				}
			}
		}
		// What was accepted reads back the same.
		again, _ := json.Marshal(clients)
		if back, err := ParseClients(again); err != nil || len(back) != len(clients) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
