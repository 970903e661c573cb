package main

// Shared helpers for the end-to-end tests: WeChat's side of the callback,
// through the in-process simulator (plain and safe mode) or as raw, forged
// and replayed requests, and reading the replies it gets.

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
	"wxlogin/wechat"
)

// wechatAt plays WeChat's servers posting to one instance's webhook.
func wechatAt(s *testServer) *wechat.Simulator {
	return &wechat.Simulator{URL: s.URL + "/wechat/callback", Token: clusterToken, AppID: demoAppID}
}

var countInReply = regexp.MustCompile(`第 (\d+) 次`)

// replyCount reads the login count from a confirmed scan's reply text.
func replyCount(t testing.TB, text string) int {
	t.Helper()
	m := countInReply.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("reply %q carries no login count", text)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// scanForLink sends a SCAN for the scene and returns the confirm page's path
// taken from WeChat's reply, and the reply text.
func scanForLink(t *testing.T, sim *wechat.Simulator, ev wechat.Event) (string, string) {
	t.Helper()
	r, err := sim.Send(t.Context(), ev)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan callback: %v, status %d %q", err, r.Status, r.Body)
	}
	m := confirmLinkRE.FindStringSubmatch(r.Text)
	if m == nil {
		t.Fatalf("reply carries no confirm link: %q", r.Text)
	}
	return m[1], r.Text
}

func simulatorFor(s *testServer) *wechat.Simulator {
	return &wechat.Simulator{URL: s.URL + "/wechat/callback", Token: "test-callback-token"}
}

// signedCallbackQuery is a query signed with the test servers' token.
func signedCallbackQuery(ts int64, nonce string) url.Values {
	q := url.Values{}
	t := strconv.FormatInt(ts, 10)
	q.Set("timestamp", t)
	q.Set("nonce", nonce)
	q.Set("signature", util.Signature(testToken, t, nonce))
	return q
}

// testAESKey is a 43-character EncodingAESKey, as WeChat's console shows it.
const testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

const testToken = "test-callback-token" // startTestServer's WECHAT_TOKEN

// secSimulator plays WeChat for the demo account of srv; aesKey "" = plain mode.
func secSimulator(srv *testServer, aesKey string) *wechat.Simulator {
	return &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: testToken, AppID: demoAppID, AESKey: aesKey}
}

// sendRaw posts body to the webhook with query q.
func sendRaw(t *testing.T, base string, q url.Values, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/wechat/callback?"+q.Encode(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// captured is one signed callback, kept so it can be replayed byte for byte.
type captured struct {
	q    url.Values
	body []byte
}

func capture(t *testing.T, sim *wechat.Simulator, ev wechat.Event, at time.Time) captured {
	t.Helper()
	req, err := sim.Request(t.Context(), ev, at)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	return captured{q: req.URL.Query(), body: body}
}

func (c captured) with(key, value string) captured {
	q := url.Values{}
	for k, v := range c.q {
		q[k] = append([]string(nil), v...)
	}
	q.Set(key, value)
	return captured{q: q, body: c.body}
}

// signedGarbage is a safe-mode request whose signatures are right but whose
// Encrypt field is enc (which does not decrypt to a message for us).
func signedGarbage(enc string, at time.Time) captured {
	ts := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{}
	q.Set("timestamp", ts)
	q.Set("nonce", "n0nce")
	q.Set("signature", util.Signature(testToken, ts, "n0nce"))
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", util.Signature(testToken, ts, "n0nce", enc))
	body, _ := xml.Marshal(message.EncryptedXMLMsg{ToUserName: "gh_x", EncryptedMsg: enc})
	return captured{q: q, body: body}
}

// replyText is the text WeChat's answer carries ("" for "success"),
// decrypted and its signature checked in safe mode.
func replyText(t *testing.T, sim *wechat.Simulator, status int, body string) string {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("callback answered %d: %s", status, body)
	}
	if body == "success" {
		return ""
	}
	raw := []byte(body)
	if sim.AESKey != "" {
		var env message.ResponseEncryptedXMLMsg
		if err := xml.Unmarshal(raw, &env); err != nil {
			t.Fatalf("safe-mode reply %q: %v", body, err)
		}
		if util.Signature(sim.Token, strconv.FormatInt(env.Timestamp, 10), env.Nonce, env.EncryptedMsg) != env.MsgSignature {
			t.Fatalf("safe-mode reply has a bad signature: %q", body)
		}
		var err error
		if _, raw, err = util.DecryptMsg(sim.AppID, env.EncryptedMsg, sim.AESKey); err != nil {
			t.Fatalf("safe-mode reply does not decrypt: %v", err)
		}
	}
	var text message.Text
	if err := xml.Unmarshal(raw, &text); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return string(text.Content)
}

// inBothModes runs test as the subtests "plain" and "aes" (WeChat's safe
// mode), each with a database of its own; env is the server's environment.
func inBothModes(t *testing.T, test func(t *testing.T, aes string, env map[string]string)) {
	for _, aes := range []string{"", testAESKey} {
		name := "plain"
		if aes != "" {
			name = "aes"
		}
		t.Run(name, func(t *testing.T) {
			test(t, aes, map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db"), "WECHAT_AES_KEY": aes})
		})
	}
}
