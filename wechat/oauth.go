package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/silenceper/wechat/v2/officialaccount/user"
	"github.com/silenceper/wechat/v2/util"

	"wxlogin/login"
)

// WeChat errcodes of web authorisation.
const (
	ErrCodeInvalidCode = 40029 // invalid, expired or reused code
	ErrCodeCodeUsed    = 40163 // the code was already used
	ErrCodeAPIQuota    = 45011 // API called too often
)

// AuthorizeURLPrefix is WeChat's web authorisation page, as silenceper builds it.
const AuthorizeURLPrefix = "https://open.weixin.qq.com/connect/oauth2/authorize"

// WebAuthURL is WeChat's authorisation page for this account, silent
// (snsapi_base), sending the browser back to redirectURI with state. The
// redirect URI's domain must be the account's web authorisation domain
// (网页授权域名), or WeChat shows an error instead.
func (c *Client) WebAuthURL(redirectURI, state string) string {
	// silenceper escapes redirect_uri only; state is [A-Za-z0-9] (login.ValidWebAuthState).
	u, _ := c.oauth.GetRedirectURL(redirectURI, "snsapi_base", state) // never fails
	return u
}

// StandInAuthorizeURL turns WeChat's authorisation URL into the demo
// stand-in's page at path on our own origin (same query), so demo mode never
// sends a browser to WeChat.
func StandInAuthorizeURL(wechatURL, path string) string {
	rest, ok := strings.CutPrefix(wechatURL, AuthorizeURLPrefix)
	if !ok {
		panic("wechat: not an authorisation URL") // silenceper's constant changed
	}
	rest, _, _ = strings.Cut(rest, "#") // #wechat_redirect means nothing to a browser
	return path + rest
}

// DemoWebAuthCode asks the demo stand-in for a code of its authorisation
// page for openID, as WeChat's page issues one when the person agrees. It
// goes through silenceper's HTTP client like every API call, so it reaches
// the stand-in this process's WeChat calls reach; real WeChat has no such path.
func DemoWebAuthCode(ctx context.Context, openID string) (string, error) {
	raw, err := util.HTTPGetContext(ctx, apiBase+DemoWebAuthCodePath+"?openid="+url.QueryEscape(openID))
	if err != nil {
		return "", fmt.Errorf("stand-in authorisation code: %s", Scrub(err.Error()))
	}
	var ans struct {
		Code    string `json:"code"`
		ErrCode int64  `json:"errcode"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Code == "" {
		return "", fmt.Errorf("stand-in authorisation code: no code in the answer (errcode %d)", ans.ErrCode)
	}
	return ans.Code, nil
}

// ExchangeWebAuthCode trades the code of WeChat's authorisation page for
// the openid (sns/oauth2/access_token; login.WebAuthExchanger). The code is
// checked by the caller ([A-Za-z0-9_-]): silenceper puts it into the URL as is.
func (c *Client) ExchangeWebAuthCode(ctx context.Context, code string) (login.WebAuthIdentity, error) {
	const api = "sns/oauth2/access_token"
	res, err := c.oauth.GetUserAccessTokenContext(ctx, code)
	switch {
	case err != nil && res.ErrCode == 0:
		c.observeNoAnswer(api)
		return login.WebAuthIdentity{}, &login.Error{Code: login.EWECHAT,
			Message: "WeChat is unavailable (no answer from its API); try again in a moment",
			Err:     errors.New(Scrub(err.Error()))}
	case err != nil:
		c.observe(api, res.ErrCode)
		return login.WebAuthIdentity{}, webAuthError(res.ErrCode)
	case res.OpenID == "":
		c.observeNoAnswer(api)
		return login.WebAuthIdentity{}, &login.Error{Code: login.EWECHAT, Message: "WeChat answered without an openid"}
	}
	c.observe(api, 0)
	return login.WebAuthIdentity{OpenID: res.OpenID, UnionID: res.UnionID, Snapshot: res.IsSnapShotUser == 1}, nil
}

// webAuthError words a WeChat errcode of the code exchange; WeChat's own
// errmsg is not passed on (it is not for the person, and may change).
func webAuthError(code int64) error {
	switch code {
	case ErrCodeInvalidCode, ErrCodeCodeUsed:
		return &login.Error{Code: login.EINVALID, Message: fmt.Sprintf("WeChat did not accept the authorisation code (errcode %d)", code)}
	case ErrCodeQuota, ErrCodeAPIQuota:
		return &login.Error{Code: login.EQUOTA, Message: fmt.Sprintf("WeChat's API quota is spent (errcode %d)", code)}
	}
	return &login.Error{Code: login.EWECHAT, Message: fmt.Sprintf("WeChat refused the authorisation (errcode %d)", code)}
}

// UnionID asks cgi-bin/user/info for a user's unionid (login.UnionIDLookup);
// "" when the account is not bound to an Open Platform account. Unlike
// silenceper's GetUserInfo it honours ctx, so a slow WeChat is cut off.
func (c *Client) UnionID(ctx context.Context, openID string) (string, error) {
	const api = "user/info"
	tok, err := c.oa.GetAccessTokenContext(ctx)
	if err != nil {
		if code, answered := errcodeOf(err); answered {
			c.observe("token", code)
		} else {
			c.observeNoAnswer("token")
		}
		return "", fmt.Errorf("user/info: access token: %s", Scrub(err.Error()))
	}
	raw, err := util.HTTPGetContext(ctx, apiBase+"/cgi-bin/user/info?access_token="+
		url.QueryEscape(tok)+"&openid="+url.QueryEscape(openID)+"&lang=zh_CN")
	if err != nil {
		c.observeNoAnswer(api)
		return "", fmt.Errorf("user/info: %s", Scrub(err.Error()))
	}
	var info user.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		c.observeNoAnswer(api)
		return "", fmt.Errorf("user/info: undecodable answer: %w", err)
	}
	c.observe(api, info.ErrCode)
	if info.ErrCode != 0 {
		if isTokenError(info.ErrCode) {
			c.dropToken()
		}
		return "", fmt.Errorf("user/info: errcode %d", info.ErrCode)
	}
	return info.UnionID, nil
}
