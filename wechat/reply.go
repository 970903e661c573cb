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
		return "这个二维码已经用过了, 请刷新网页后重新扫码。 This code was already used; refresh the page for a new one."
	case login.OutcomeExpired:
		return "二维码已过期, 请刷新网页后重新扫码。 This code has expired; refresh the page for a new one."
	}
	return ""
}
