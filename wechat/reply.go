package wechat

import (
	"strconv"
	"strings"

	"wxlogin/login"
)

// DefaultReplyTemplate is the text a person gets in WeChat when their login
// went through; {name} and {count} are replaced.
const DefaultReplyTemplate = "{name}, 登录成功! 这是你第 {count} 次登录, 玩得开心!"

// Replies turns what handling a message produced into the text WeChat
// shows the person. The zero value uses DefaultReplyTemplate.
type Replies struct {
	Template string // {name} and {count} are replaced
}

// Text is the reply to a result; "" means no reply ("success").
func (r Replies) Text(res login.Result) string {
	switch res.Outcome {
	case login.OutcomeConfirmed:
		t := r.Template
		if t == "" {
			t = DefaultReplyTemplate
		}
		return strings.NewReplacer("{name}", res.Name, "{count}", strconv.FormatInt(res.LoginCount, 10)).Replace(t)
	case login.OutcomeAlreadyUsed:
		if res.Method == login.MethodMessageCode {
			return "这个登录码已经有人用过了, 请刷新网页获取新的登录码。 This login code was already used; refresh the page for a new one."
		}
		return "这个二维码已经用过了, 请刷新网页后重新扫码。 This code was already used; refresh the page for a new one."
	case login.OutcomeExpired:
		if res.Method == login.MethodMessageCode {
			return "登录码已过期, 请刷新网页获取新的登录码。 This login code has expired; refresh the page for a new one."
		}
		return "二维码已过期, 请刷新网页后重新扫码。 This code has expired; refresh the page for a new one."
	case login.OutcomeCodeMiss:
		return "没有找到这个登录码, 请核对网页上的数字, 或刷新网页获取新的登录码。 No login is waiting for this code; check the digits on the page, or refresh it for a new code."
	case login.OutcomeTooManyAttempts:
		return "错误的登录码太多, 请 10 分钟后再试。 Too many wrong login codes; try again in 10 minutes."
	}
	return ""
}
