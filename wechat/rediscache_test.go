package wechat_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wxlogin/internal/redistest"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestRedis connects to the real Redis on 127.0.0.1:6379 and returns a
// prefix of its own whose keys are deleted after the test.
func newTestRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := redistest.Client(t, redistest.URL)
	return rdb, redistest.Prefix(t, rdb)
}

// secondClient is another instance's connection to the test Redis.
func secondClient(t *testing.T) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestRedisCacheSharedBetweenInstances(t *testing.T) {
	rdb, prefix := newTestRedis(t)
	a := wechat.NewRedisCache(rdb, prefix, quiet)
	b := wechat.NewRedisCache(secondClient(t), prefix, quiet)
	other := wechat.NewRedisCache(rdb, prefix+"other:", quiet)

	if err := a.Set("gowechat_officialaccount__stable_access_token_wx1", "tok-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := b.Get("gowechat_officialaccount__stable_access_token_wx1"); got != "tok-1" {
		t.Fatalf("other instance reads %v, want tok-1", got)
	}
	if !b.IsExist("gowechat_officialaccount__stable_access_token_wx1") || b.IsExist("missing") {
		t.Fatal("IsExist disagrees with Get")
	}
	if got := other.Get("gowechat_officialaccount__stable_access_token_wx1"); got != nil {
		t.Fatalf("another prefix reads %v, want nil", got)
	}
	key := prefix + "wechat:gowechat_officialaccount__stable_access_token_wx1"
	ttl, err := rdb.PTTL(context.Background(), key).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TTL of %s = %s, %v; want about 1h", key, ttl, err)
	}
	if err := b.Delete("gowechat_officialaccount__stable_access_token_wx1"); err != nil {
		t.Fatal(err)
	}
	if got := a.Get("gowechat_officialaccount__stable_access_token_wx1"); got != nil {
		t.Fatalf("after delete on another instance: %v", got)
	}
}

func TestRedisCacheDeleteMatching(t *testing.T) {
	rdb, prefix := newTestRedis(t)
	c := wechat.NewRedisCache(rdb, prefix, quiet)
	neighbour := wechat.NewRedisCache(rdb, prefix+"n:", quiet)
	for _, k := range []string{"x_access_token_a", "y_access_token_b", "jsapi_ticket_a"} {
		if err := c.Set(k, "v-"+k, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := neighbour.Set("x_access_token_a", "theirs", time.Hour); err != nil {
		t.Fatal(err)
	}
	c.DeleteMatching("access_token")
	for k, want := range map[string]any{"x_access_token_a": nil, "y_access_token_b": nil, "jsapi_ticket_a": "v-jsapi_ticket_a"} {
		if got := c.Get(k); got != want {
			t.Errorf("after DeleteMatching: %s = %v, want %v", k, got, want)
		}
	}
	if got := neighbour.Get("x_access_token_a"); got != "theirs" {
		t.Errorf("DeleteMatching reached another prefix: %v", got)
	}
}

// TestRedisCacheRedisDown: Set keeps working on this instance and Get
// answers from its copy, so a Redis outage does not hammer WeChat's token API.
func TestRedisCacheRedisDown(t *testing.T) {
	c := wechat.NewRedisCache(redistest.DownClient(t), "wxlogin-test:down:", quiet)
	if err := c.Set("k_access_token", "local", time.Hour); err != nil {
		t.Fatalf("Set with Redis down: %v (silenceper would fail the token fetch)", err)
	}
	if got := c.Get("k_access_token"); got != "local" {
		t.Fatalf("Get with Redis down = %v, want this instance's copy", got)
	}
}

// TestRedisCacheOneTokenForTheCluster: two instances' WeChat clients share
// the stable access token through Redis; when WeChat rejects it (40001) one
// instance drops it for everyone and fetches a new one.
func TestRedisCacheOneTokenForTheCluster(t *testing.T) {
	rdb, prefix := newTestRedis(t)
	standIn := misbehavingWeChat(t)
	tokensBefore := standIn.TokenCalls.Load()

	cfg := wechat.Config{AppID: "wxcluster0000001", AppSecret: "s", Token: "t"}
	cfgA, cfgB := cfg, cfg
	cfgA.Cache = wechat.NewRedisCache(rdb, prefix, quiet)
	cfgB.Cache = wechat.NewRedisCache(secondClient(t), prefix, quiet)
	a, b := wechat.NewClient(cfgA, quiet), wechat.NewClient(cfgB, quiet)
	ctx := context.Background()

	for i, c := range []*wechat.Client{a, b, a, b} {
		if _, err := c.IssueQR(ctx, "scene-cluster-token-0"+string(rune('0'+i)), 2*time.Minute); err != nil {
			t.Fatalf("issue QR %d: %v", i, err)
		}
	}
	if n := standIn.TokenCalls.Load() - tokensBefore; n != 1 {
		t.Fatalf("token fetched %d times by two instances, want 1 (shared through Redis)", n)
	}

	standIn.SetFault(wechattest.Fault{RejectTokens: true}) // WeChat forgets every token issued so far
	standIn.SetFault(wechattest.Fault{})
	if _, err := a.IssueQR(ctx, "scene-cluster-token-10", 2*time.Minute); err != nil {
		t.Fatalf("issue QR after the token was rejected: %v", err)
	}
	if _, err := b.IssueQR(ctx, "scene-cluster-token-11", 2*time.Minute); err != nil {
		t.Fatalf("other instance after the token was replaced: %v", err)
	}
	if n := standIn.TokenCalls.Load() - tokensBefore; n != 2 {
		t.Fatalf("token fetched %d times in all, want 2 (one refresh, shared)", n)
	}
}
