package main

// The operators' API over real HTTP: the token check, a person's data shown,
// their sessions ended and their data deleted, on bbolt and on a cluster of
// two instances on Redis; the unsubscribe policy.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"wxlogin/wechat"
)

type userRecordBody struct {
	ID         string `json:"id"`
	OpenID     string `json:"openid"`
	LoginCount int64  `json:"login_count"`
	Sessions   []struct {
		CreatedAt string `json:"created_at"`
		ExpiresAt string `json:"expires_at"`
	} `json:"sessions"`
}

type erasedBody struct {
	ID       string `json:"id"`
	Sessions int    `json:"sessions"`
	Scenes   int    `json:"scenes"`
}

func adminCall(t *testing.T, method, url string, out any) *http.Response {
	t.Helper()
	return apiCall(t, method, url, testAdminToken, nil, out)
}

func meStatus(t *testing.T, srv *testServer, token string) int {
	t.Helper()
	return apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", token, nil, nil).StatusCode
}

func TestAdminAPIOffByDefault(t *testing.T) {
	srv := startTestServer(t, nil)
	r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/admin/users/u_AAAAAAAAAAAAAAAA", testAdminToken, nil, nil)
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("admin API without WXLOGIN_ADMIN_TOKEN: %d, want 404", r.StatusCode)
	}
}

func TestAdminSettingsAreChecked(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"WXLOGIN_ADMIN_TOKEN":    {"WXLOGIN_ADMIN_TOKEN": "too-short-0123456789"},
		"WXLOGIN_ON_UNSUBSCRIBE": {"WXLOGIN_ON_UNSUBSCRIBE": "forget"},
	} {
		t.Run(name, func(t *testing.T) {
			env["WXLOGIN_DB"] = t.TempDir() + "/x.db"
			env["WXLOGIN_ADDR"] = "127.0.0.1:0"
			err := run(context.Background(), nil, func(k string) string { return env[k] }, &syncBuffer{})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("got %v, want an error naming %s", err, name)
			}
		})
	}
}

func TestAdminTokenIsRequired(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken})
	for _, bearer := range []string{"", "wrong", testAdminToken + "x", testAdminToken[:len(testAdminToken)-1]} {
		for _, rt := range []struct{ method, path string }{
			{http.MethodGet, "/api/v1/admin/backup"},
			{http.MethodGet, "/api/v1/admin/users/u_AAAAAAAAAAAAAAAA"},
			{http.MethodDelete, "/api/v1/admin/users/u_AAAAAAAAAAAAAAAA"},
			{http.MethodPost, "/api/v1/admin/users/u_AAAAAAAAAAAAAAAA/logout"},
		} {
			var e errorBody
			r := apiCall(t, rt.method, srv.URL+rt.path, bearer, nil, &e)
			if r.StatusCode != http.StatusUnauthorized || e.Error != "unauthorized" || e.Message == "" {
				t.Fatalf("%s %s with %q: %d %+v, want 401 unauthorized", rt.method, rt.path, bearer, r.StatusCode, e)
			}
		}
	}
	if strings.Contains(srv.Logs.String(), testAdminToken[:20]) {
		t.Fatal("the admin token appears in the logs")
	}
	// Guessing is rate-limited per IP like everything else.
	var limited *http.Response
	for range adminRequestsPerMinute + 1 {
		if r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/admin/users/u_AAAAAAAAAAAAAAAA", "guess", nil, nil); r.StatusCode == http.StatusTooManyRequests {
			limited = r
			break
		}
	}
	if limited == nil || limited.Header.Get("Retry-After") == "" {
		t.Fatalf("%d wrong tokens in a row were never limited", adminRequestsPerMinute+1)
	}
}

// TestAdminUserData: show, log out everywhere, delete; the audit log names
// the id, never the openid; a later login starts over at 1.
func TestAdminUserData(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken, "WXLOGIN_SCENE_RATE": "0"})
	const openID = "oAdmin_person_0000000000001"
	first := loginAs(t, srv, openID)
	second := loginAs(t, srv, openID)
	id := second.User.ID
	if first.User.ID != id || second.User.LoginCount != 2 {
		t.Fatalf("two logins: %+v then %+v", first.User, second.User)
	}
	userURL := srv.URL + "/api/v1/admin/users/" + id

	var rec userRecordBody
	if r := adminCall(t, http.MethodGet, userURL, &rec); r.StatusCode != 200 {
		t.Fatalf("GET user: %d", r.StatusCode)
	}
	if rec.ID != id || rec.OpenID != openID || rec.LoginCount != 2 || len(rec.Sessions) != 2 {
		t.Fatalf("kept about the user: %+v", rec)
	}

	var ended struct{ Sessions int }
	if r := adminCall(t, http.MethodPost, userURL+"/logout", &ended); r.StatusCode != 200 || ended.Sessions != 2 {
		t.Fatalf("logout everywhere: %d %+v", r.StatusCode, ended)
	}
	for _, tok := range []tokenBody{first, second} {
		if s := meStatus(t, srv, tok.AccessToken); s != http.StatusUnauthorized {
			t.Fatalf("/me after logout everywhere: %d", s)
		}
	}

	third := loginAs(t, srv, openID)
	if third.User.LoginCount != 3 {
		t.Fatalf("login after logout: count %d, want 3 (logout keeps the user)", third.User.LoginCount)
	}
	loginAs(t, srv, "oAdmin_someone_else_0000001")

	var erased erasedBody
	if r := adminCall(t, http.MethodDelete, userURL, &erased); r.StatusCode != 200 {
		t.Fatalf("DELETE user: %d", r.StatusCode)
	}
	if erased.ID != id || erased.Sessions != 1 || erased.Scenes < 1 {
		t.Fatalf("erased %+v, want its 1 session and its consumed scene", erased)
	}
	if s := meStatus(t, srv, third.AccessToken); s != http.StatusUnauthorized {
		t.Fatalf("/me after delete: %d", s)
	}
	var e errorBody
	if r := adminCall(t, http.MethodGet, userURL, &e); r.StatusCode != http.StatusNotFound || e.Error != "not_found" {
		t.Fatalf("GET deleted user: %d %+v", r.StatusCode, e)
	}
	if r := adminCall(t, http.MethodDelete, userURL, &e); r.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", r.StatusCode)
	}
	if r := adminCall(t, http.MethodGet, srv.URL+"/api/v1/admin/users/not-an-id", &e); r.StatusCode != http.StatusNotFound {
		t.Fatalf("junk id: %d", r.StatusCode)
	}

	logs := srv.Logs.String()
	var audit string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "audit: user deleted") {
			audit = line
		}
	}
	if !strings.Contains(audit, "user_id="+id) || !strings.Contains(audit, `actor="admin token"`) || !strings.Contains(audit, "at=") {
		t.Fatalf("audit line %q must say who, when and which id", audit)
	}
	if strings.Contains(logs, openID) {
		t.Fatal("the openid appears in the logs")
	}

	fresh := loginAs(t, srv, openID)
	if fresh.User.LoginCount != 1 || fresh.User.ID == id {
		t.Fatalf("login after delete: %+v, want a new user at count 1", fresh.User)
	}
}

// TestAdminOnCluster: on Redis, a logout everywhere or a delete through one
// instance ends sessions used through another; backup says why it cannot.
func TestAdminOnCluster(t *testing.T) {
	prefix := newClusterPrefix(t, clusterRedis)
	nodes := startCluster(t, 2, clusterRedis, prefix, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken})
	a, b := nodes[0], nodes[1]
	const openID = "oAdmin_cluster_000000000001"
	tok := loginAs(t, a, openID)
	if s := meStatus(t, b, tok.AccessToken); s != 200 {
		t.Fatalf("/me on the other instance: %d", s)
	}
	var ended struct{ Sessions int }
	if r := adminCall(t, http.MethodPost, b.URL+"/api/v1/admin/users/"+tok.User.ID+"/logout", &ended); r.StatusCode != 200 || ended.Sessions != 1 {
		t.Fatalf("logout through b: %d %+v", r.StatusCode, ended)
	}
	for _, n := range nodes {
		if s := meStatus(t, n, tok.AccessToken); s != http.StatusUnauthorized {
			t.Fatalf("/me after logout everywhere: %d", s)
		}
	}
	tok = loginAs(t, a, openID)
	if tok.User.LoginCount != 2 {
		t.Fatalf("count %d, want 2", tok.User.LoginCount)
	}
	var erased erasedBody
	if r := adminCall(t, http.MethodDelete, b.URL+"/api/v1/admin/users/"+tok.User.ID, &erased); r.StatusCode != 200 || erased.Sessions != 1 {
		t.Fatalf("delete through b: %d %+v", r.StatusCode, erased)
	}
	if s := meStatus(t, a, tok.AccessToken); s != http.StatusUnauthorized {
		t.Fatalf("/me on a after delete through b: %d", s)
	}
	if fresh := loginAs(t, b, openID); fresh.User.LoginCount != 1 {
		t.Fatalf("login after delete: count %d, want 1", fresh.User.LoginCount)
	}
	var e errorBody
	r := adminCall(t, http.MethodGet, a.URL+"/api/v1/admin/backup", &e)
	if r.StatusCode != http.StatusConflict || !strings.Contains(e.Message, "Redis") {
		t.Fatalf("backup on Redis: %d %+v, want 409 saying to back up Redis itself", r.StatusCode, e)
	}
}

func TestUnsubscribePolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   int // /me after the unfollow
	}{
		{"", http.StatusOK},
		{"keep", http.StatusOK},
		{"logout", http.StatusUnauthorized},
	} {
		t.Run("policy="+tc.policy, func(t *testing.T) {
			srv := startTestServer(t, map[string]string{"WXLOGIN_ON_UNSUBSCRIBE": tc.policy})
			openID := wechat.RandomOpenID()
			tok := loginAs(t, srv, openID)
			other := loginAs(t, srv, wechat.RandomOpenID())
			sim := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: "test-callback-token", AppID: demoAppID}
			ev := wechat.Event{OpenID: openID, Event: "unsubscribe", CreateTime: time.Now()}
			for range 2 { // WeChat's retry changes nothing more
				reply, err := sim.Send(context.Background(), ev)
				if err != nil || reply.Status != 200 {
					t.Fatalf("unsubscribe: %+v %v", reply, err)
				}
			}
			if s := meStatus(t, srv, tok.AccessToken); s != tc.want {
				t.Fatalf("/me after unfollow: %d, want %d", s, tc.want)
			}
			if s := meStatus(t, srv, other.AccessToken); s != http.StatusOK {
				t.Fatalf("someone else's session after the unfollow: %d", s)
			}
		})
	}
}
