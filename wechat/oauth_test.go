package wechat_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

const oauthSecret = "app-secret-value-0123456789"

func oauthClient(t *testing.T) (*wechat.Client, *wechattest.WeChat, *observed) {
	standIn := misbehavingWeChat(t)
	calls := &observed{}
	c := wechat.NewClient(wechat.Config{AppID: "wxoauthtest", AppSecret: oauthSecret, Token: "t", Observe: calls.add},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	return c, standIn, calls
}

func TestWebAuthURL(t *testing.T) {
	c, _, _ := oauthClient(t)
	const state = "AbC123xyzAbC123xyzAbC123xyz01234"
	u := c.WebAuthURL("https://login.example.com/api/v1/login/oauth/callback", state)
	if !strings.HasPrefix(u, wechat.AuthorizeURLPrefix+"?") || !strings.HasSuffix(u, "#wechat_redirect") {
		t.Fatalf("authorisation URL %q", u)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	if q.Get("appid") != "wxoauthtest" || q.Get("scope") != "snsapi_base" || q.Get("state") != state ||
		q.Get("response_type") != "code" || q.Get("redirect_uri") != "https://login.example.com/api/v1/login/oauth/callback" {
		t.Errorf("query %v", q)
	}
	demo := wechat.StandInAuthorizeURL(u, "/api/v1/dev/oauth/authorize")
	if !strings.HasPrefix(demo, "/api/v1/dev/oauth/authorize?appid=wxoauthtest&") || strings.Contains(demo, "#") {
		t.Errorf("stand-in URL %q", demo)
	}
}

func TestExchangeWebAuthCode(t *testing.T) {
	c, standIn, calls := oauthClient(t)
	ctx := context.Background()

	code := standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "oWebUser", UnionID: "uWebUser"})
	who, err := c.ExchangeWebAuthCode(ctx, code)
	if err != nil || who != (login.WebAuthIdentity{OpenID: "oWebUser", UnionID: "uWebUser"}) {
		t.Fatalf("exchange: %+v %v", who, err)
	}
	snap := standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "oVirtual", Snapshot: true})
	if who, err := c.ExchangeWebAuthCode(ctx, snap); err != nil || !who.Snapshot {
		t.Fatalf("snapshot user: %+v %v", who, err)
	}
	calls.take()

	for _, tc := range []struct {
		name, code, wantCode, wantObserved string
	}{
		{"used again", code, login.EINVALID, "40163"},
		{"unknown", "NoSuchCode", login.EINVALID, "40029"},
		{"quota", standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "o", ErrCode: 45009}), login.EQUOTA, "45009"},
		{"bad secret", standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "o", ErrCode: 40125}), login.EWECHAT, "40125"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ExchangeWebAuthCode(ctx, tc.code)
			if login.ErrorCode(err) != tc.wantCode {
				t.Fatalf("%v; want %s", err, tc.wantCode)
			}
			if got := calls.take(); len(got) != 1 || got[0] != "sns/oauth2/access_token "+tc.wantObserved {
				t.Errorf("observed %v", got)
			}
			if msg := login.ErrorMessage(err); strings.Contains(msg, "stand-in") || strings.Contains(msg, "invalid code") {
				t.Errorf("message %q passes WeChat's errmsg on", msg)
			}
		})
	}

	// No answer: the error (which embeds the request URL) names neither the
	// secret nor the code.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	fresh := standIn.IssueWebAuthCode(wechattest.WebAuthCode{OpenID: "o"})
	_, err = c.ExchangeWebAuthCode(dead, fresh)
	if login.ErrorCode(err) != login.EWECHAT {
		t.Fatalf("cancelled: %v", err)
	}
	if s := err.Error(); strings.Contains(s, oauthSecret) || strings.Contains(s, fresh) {
		t.Errorf("error leaks the secret or the code: %s", s)
	}
	if got := calls.take(); len(got) != 1 || got[0] != "sns/oauth2/access_token none" {
		t.Errorf("observed %v", got)
	}
}

func TestUnionIDLookup(t *testing.T) {
	c, standIn, _ := oauthClient(t)
	ctx := context.Background()
	const openID = "oUnionLookup000001"
	got, err := c.UnionID(ctx, openID)
	if err != nil || got != wechat.DemoUnionID(openID) {
		t.Fatalf("unionid %q %v", got, err)
	}
	standIn.SetFault(wechattest.Fault{UserInfoErrCode: 40003})
	if _, err := c.UnionID(ctx, openID); err == nil || !strings.Contains(err.Error(), "40003") {
		t.Errorf("errcode: %v", err)
	}
	standIn.SetFault(wechattest.Fault{UserInfoDelay: time.Minute})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = c.UnionID(short, openID)
	if err == nil || time.Since(began) > 2*time.Second {
		t.Fatalf("a hanging user/info: %v after %s; want cut off with the context", err, time.Since(began))
	}
	if strings.Contains(err.Error(), openID) || strings.Contains(err.Error(), "standin-") {
		t.Errorf("error leaks the openid or the token: %s", err)
	}
}
