package wechat_test

import (
	"testing"

	"wxlogin/login"
	"wxlogin/wechat"
)

func TestRepliesText(t *testing.T) {
	confirmed := login.Result{Outcome: login.OutcomeConfirmed, Name: "微信用户", LoginCount: 7}
	for _, tc := range []struct {
		name     string
		template string
		res      login.Result
		want     string
	}{
		{"default template", "", login.Result{Outcome: login.OutcomeConfirmed, Name: "微信用户", LoginCount: 1},
			"微信用户, 登录成功! 这是你第 1 次登录, 玩得开心!"},
		{"own template", "Hi {name}, visit #{count}", confirmed, "Hi 微信用户, visit #7"},
		{"duplicate gets the same text", "", login.Result{Outcome: login.OutcomeConfirmed, Name: "微信用户", LoginCount: 1, Duplicate: true},
			"微信用户, 登录成功! 这是你第 1 次登录, 玩得开心!"},
		{"already used", "", login.Result{Outcome: login.OutcomeAlreadyUsed},
			"这个二维码已经用过了, 请刷新网页后重新扫码。 This code was already used; refresh the page for a new one."},
		{"expired", "", login.Result{Outcome: login.OutcomeExpired},
			"二维码已过期, 请刷新网页后重新扫码。 This code has expired; refresh the page for a new one."},
		{"code already used", "", login.Result{Outcome: login.OutcomeAlreadyUsed, Method: login.MethodMessageCode},
			"这个登录码已经有人用过了, 请刷新网页获取新的登录码。 This login code was already used; refresh the page for a new one."},
		{"code expired", "", login.Result{Outcome: login.OutcomeExpired, Method: login.MethodMessageCode},
			"登录码已过期, 请刷新网页获取新的登录码。 This login code has expired; refresh the page for a new one."},
		{"code miss", "", login.Result{Outcome: login.OutcomeCodeMiss, Method: login.MethodMessageCode},
			"没有找到这个登录码, 请核对网页上的数字, 或刷新网页获取新的登录码。 No login is waiting for this code; check the digits on the page, or refresh it for a new code."},
		{"too many attempts", "", login.Result{Outcome: login.OutcomeTooManyAttempts, Method: login.MethodMessageCode},
			"错误的登录码太多, 请 10 分钟后再试。 Too many wrong login codes; try again in 10 minutes."},
		{"scanned: the callback adds the link", "", login.Result{Outcome: login.OutcomeScanned}, ""},
		{"unsubscribed: no reply", "", login.Result{Outcome: login.OutcomeUnsubscribed}, ""},
	} {
		if got := (wechat.Replies{Template: tc.template}).Text(tc.res); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
