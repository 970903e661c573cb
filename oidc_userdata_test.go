package main

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"wxlogin/wechat"
)

// unionClaims are the ID token's and userinfo's claims this file checks.
type unionClaims struct {
	Subject string  `json:"sub"`
	UnionID *string `json:"unionid"`
}

// oidcLoginWithScopes runs a relying-party login of openID's person with
// scopes and returns the token, the ID token's claims and userinfo's.
func oidcLoginWithScopes(t *testing.T, srv *testServer, openID string, scopes ...string) (*oauth2.Token, *rp, unionClaims, unionClaims) {
	t.Helper()
	r := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	r.oauth.Scopes = scopes
	b := newBrowser(t)
	a := r.start()
	tok, raw, _ := r.finish(t, a, b.login(r, a, srv.URL, openID, rpConfidentialURI).Get("code"))
	idt, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var inID, inInfo unionClaims
	if err := idt.Claims(&inID); err != nil {
		t.Fatal(err)
	}
	info, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if err := info.Claims(&inInfo); err != nil {
		t.Fatal(err)
	}
	return tok, r, inID, inInfo
}

// TestOIDCUnionIDClaim: with the unionid scope the ID token and userinfo
// carry the unionid wxlogin knows, and nothing without the scope or without
// a known unionid.
func TestOIDCUnionIDClaim(t *testing.T) {
	srv := startOIDCServer(t, map[string]string{"WXLOGIN_UNIONID": "1"})
	var disc struct {
		Scopes []string `json:"scopes_supported"`
		Claims []string `json:"claims_supported"`
	}
	apiCall(t, http.MethodGet, srv.URL+"/.well-known/openid-configuration", "", nil, &disc)
	if !slices.Contains(disc.Scopes, "unionid") || !slices.Contains(disc.Claims, "unionid") {
		t.Fatalf("discovery does not offer unionid: %+v", disc)
	}

	const openID = "oOIDC_union_00000000000001"
	tok := loginAs(t, srv, openID) // the lookup of the unionid follows the first login
	waitFor(t, 5*time.Second, "the unionid is kept", func() bool {
		var me struct {
			UnionID string `json:"unionid"`
		}
		apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", tok.AccessToken, nil, &me)
		return me.UnionID != ""
	})
	want := wechat.DemoUnionID(openID)
	_, _, inID, inInfo := oidcLoginWithScopes(t, srv, openID, "openid", "unionid")
	if inID.UnionID == nil || *inID.UnionID != want || inInfo.UnionID == nil || *inInfo.UnionID != want {
		t.Fatalf("with the unionid scope: ID token %+v, userinfo %+v; want %q", inID, inInfo, want)
	}
	_, _, inID, inInfo = oidcLoginWithScopes(t, srv, openID, "openid", "profile")
	if inID.UnionID != nil || inInfo.UnionID != nil {
		t.Fatalf("without the unionid scope: ID token %+v, userinfo %+v", inID, inInfo)
	}

	// A person whose unionid is not known: the claim is omitted, not empty.
	plain := startOIDCServer(t, nil)
	_, _, inID, inInfo = oidcLoginWithScopes(t, plain, "oOIDC_nounion_000000000001", "openid", "unionid")
	if inID.UnionID != nil || inInfo.UnionID != nil {
		t.Fatalf("no known unionid: ID token %+v, userinfo %+v", inID, inInfo)
	}
}

// TestOIDCDeletedUserIsNotServed: after admin DELETE, an access token
// issued before it gets no userinfo, nor after the same person logs in
// again (a new user, another sub).
func TestOIDCDeletedUserIsNotServed(t *testing.T) {
	srv := startOIDCServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken})
	const openID = "oOIDC_deleted_000000000001"
	tok, r, inID, _ := oidcLoginWithScopes(t, srv, openID, "openid", "profile")
	userinfo := func() error {
		_, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
		return err
	}
	if err := userinfo(); err != nil {
		t.Fatalf("userinfo before the deletion: %v", err)
	}
	if resp := apiCall(t, http.MethodDelete, srv.URL+"/api/v1/admin/users/"+inID.Subject, testAdminToken, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin delete: %d", resp.StatusCode)
	}
	if err := userinfo(); err == nil {
		t.Fatal("userinfo served a deleted user")
	}
	again := loginAs(t, srv, openID)
	if again.User.ID == inID.Subject || again.User.LoginCount != 1 {
		t.Fatalf("login after the deletion: %+v", again.User)
	}
	if err := userinfo(); err == nil {
		t.Fatal("userinfo served the old token for the person's new user")
	}
}

// TestOIDCKeysMoveWithMigrate: `wxlogin migrate` carries the OIDC keys to
// Redis and back, so the JWKS is the same and tokens issued before the move
// (an ID token, an opaque access token) still verify and work.
func TestOIDCKeysMoveWithMigrate(t *testing.T) {
	dir := t.TempDir()
	first, back := filepath.Join(dir, "first.db"), filepath.Join(dir, "back.db")
	prefix := newClusterPrefix(t, clusterRedis)
	addr := freeLoopbackAddr(t)
	clients := writeClientFile(t)
	onBolt := func(db string) map[string]string {
		return map[string]string{"WXLOGIN_ADDR": addr, "WXLOGIN_PUBLIC_URL": "http://" + addr, "WXLOGIN_DB": db,
			"WXLOGIN_OIDC_CLIENTS": clients, "WXLOGIN_SCENE_RATE": "0"}
	}
	onRedis := onBolt(filepath.Join(dir, "unused.db"))
	onRedis["WXLOGIN_REDIS_URL"], onRedis["WXLOGIN_REDIS_PREFIX"] = clusterRedis, prefix

	srv := startTestServer(t, onBolt(first))
	keys := jwks(t, srv.URL)
	tok, _, _, _ := oidcLoginWithScopes(t, srv, "oOIDC_moved_000000000001", "openid", "profile")
	idToken, _ := tok.Extra("id_token").(string)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	stillWorks := func(srv *testServer, where string) {
		t.Helper()
		if got := jwks(t, srv.URL); strings.Join(got, ",") != strings.Join(keys, ",") {
			t.Fatalf("%s: JWKS %v, want %v", where, got, keys)
		}
		r := newRP(t, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
		if _, err := r.verifier.Verify(context.Background(), idToken); err != nil {
			t.Fatalf("%s: an ID token from before the move: %v", where, err)
		}
		if _, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok)); err != nil {
			t.Fatalf("%s: userinfo with an access token from before the move: %v", where, err)
		}
	}
	migrate := func(args ...string) (string, error) {
		var out syncBuffer
		err := dispatch(context.Background(), append([]string{"migrate"}, args...), func(string) string { return "" }, &out, &out)
		return out.String(), err
	}
	toRedis := []string{"-from", "bbolt:" + first, "-to", clusterRedis, "-to-prefix", prefix}
	if out, err := migrate(toRedis...); err != nil || !strings.Contains(out, "OpenID Connect keys: copied") {
		t.Fatalf("migrate to Redis: %v\n%s", err, out)
	}
	if out, err := migrate(append(toRedis, "-force")...); err != nil || !strings.Contains(out, "OpenID Connect keys: already in the target") {
		t.Fatalf("migrate to Redis again: %v\n%s", err, out)
	}
	srv = startTestServer(t, onRedis)
	stillWorks(srv, "on Redis")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// A target whose service made keys of its own is refused without -force,
	// before anything is written.
	other := startTestServer(t, onBolt(back))
	otherKeys := jwks(t, other.URL)
	if err := other.Stop(); err != nil {
		t.Fatal(err)
	}
	fromRedis := []string{"-from", clusterRedis, "-from-prefix", prefix, "-to", "bbolt:" + back}
	if out, err := migrate(fromRedis...); err == nil || !strings.Contains(err.Error(), "other OpenID Connect keys") {
		t.Fatalf("migrate onto other keys: %v\n%s", err, out)
	}
	srv = startTestServer(t, onBolt(back))
	if got := jwks(t, srv.URL); strings.Join(got, ",") != strings.Join(otherKeys, ",") {
		t.Fatalf("a refused migration changed the target's keys: %v, want %v", got, otherKeys)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := migrate(append(fromRedis, "-force")...); err != nil || !strings.Contains(out, "OpenID Connect keys: copied") {
		t.Fatalf("migrate back to bbolt with -force: %v\n%s", err, out)
	}
	srv = startTestServer(t, onBolt(back))
	stillWorks(srv, "back on bbolt")
}
