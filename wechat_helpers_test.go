package main

// Shared helpers for the end-to-end tests: WeChat's API (one stand-in for
// the whole test binary, chosen in TestMain), WeChat's side of the callback,
// through the in-process simulator (plain and safe mode, scans and text
// messages) or as raw, forged and replayed requests, and reading the replies
// it gets; and the account's own handler that messages are forwarded to.

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// weChat plays WeChat's API for every service this test binary starts, in
// demo and production mode alike. silenceper's HTTP client is process-wide,
// so TestMain chooses it once, as main does for the binary; tests that need
// a misbehaving WeChat set its faults (and heal it when they end).
var weChat = wechattest.New()

func TestMain(m *testing.M) {
	wechat.SetHTTPClient(wechat.InProcessClient(weChat, wechatTimeout))
	os.Exit(m.Run())
}

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

var msgIDs atomic.Int64

func init() { msgIDs.Store(time.Now().UnixNano()) }

// sendText posts a signed text message as WeChat would; msgID 0 draws a new one.
func sendText(t testing.TB, sim *wechat.Simulator, openID, content string, msgID int64) (wechat.Reply, int64) {
	t.Helper()
	if msgID == 0 {
		msgID = msgIDs.Add(1)
	}
	r, err := sim.Send(context.Background(), wechat.TextMessage(openID, content, msgID, time.Now()))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("send text %q: %+v %v", content, r, err)
	}
	return r, msgID
}

// codeSimulator is secSimulator under the name the code-login tests use.
func codeSimulator(srv *testServer, aesKey string) *wechat.Simulator {
	return secSimulator(srv, aesKey)
}

// siteHandler is the account's existing handler: it verifies WeChat's
// signature with the shared token (and msg_signature, then decrypts, in
// safe mode) and answers with a text reply naming what it got.
type siteHandler struct {
	t      testing.TB
	aesKey string
	appID  string
	// respond, when set, replaces the normal answer.
	respond func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex
	got      []siteRequest
	inFlight atomic.Int64
	peak     atomic.Int64
}

type siteRequest struct {
	rawQuery string
	body     []byte
	msg      message.MixMessage // decrypted in safe mode
	answer   []byte
}

func newSiteHandler(t testing.TB, aesKey string) (*siteHandler, *httptest.Server) {
	h := &siteHandler{t: t, aesKey: aesKey, appID: demoAppID}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *siteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
	}
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	if q.Get("signature") != util.Signature(clusterToken, q.Get("timestamp"), q.Get("nonce")) {
		http.Error(w, "bad signature", http.StatusForbidden)
		h.t.Errorf("site handler got a request WeChat did not sign")
		return
	}
	plain := body
	if q.Get("encrypt_type") == "aes" {
		var env message.EncryptedXMLMsg
		if err := xml.Unmarshal(body, &env); err != nil ||
			q.Get("msg_signature") != util.Signature(clusterToken, q.Get("timestamp"), q.Get("nonce"), env.EncryptedMsg) {
			http.Error(w, "bad msg_signature", http.StatusForbidden)
			h.t.Errorf("site handler: bad msg_signature")
			return
		}
		_, dec, err := util.DecryptMsg(h.appID, env.EncryptedMsg, h.aesKey)
		if err != nil {
			h.t.Errorf("site handler cannot decrypt: %v", err)
			return
		}
		plain = dec
	}
	var msg message.MixMessage
	if err := xml.Unmarshal(plain, &msg); err != nil {
		h.t.Errorf("site handler: %v", err)
	}
	req := siteRequest{rawQuery: r.URL.RawQuery, body: body, msg: msg}
	if h.respond != nil {
		h.record(req)
		h.respond(w, r)
		return
	}
	// A text reply, encrypted in safe mode as the handler would (the relay
	// does not look inside either way).
	req.answer = []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[site saw %s %s]]></Content></xml>",
		msg.FromUserName, msg.ToUserName, time.Now().Unix(), msg.MsgType, msg.Event))
	if h.aesKey != "" {
		enc, err := util.EncryptMsg([]byte("0123456789abcdef"), req.answer, h.appID, h.aesKey)
		if err != nil {
			h.t.Errorf("site handler cannot encrypt: %v", err)
		}
		ts := time.Now().Unix()
		req.answer, _ = xml.Marshal(message.ResponseEncryptedXMLMsg{EncryptedMsg: string(enc), Nonce: "site1",
			Timestamp: ts, MsgSignature: util.Signature(clusterToken, fmt.Sprint(ts), "site1", string(enc))})
	}
	h.record(req)
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	_, _ = w.Write(req.answer)
}

func (h *siteHandler) record(r siteRequest) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, r)
}

func (h *siteHandler) requests() []siteRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]siteRequest(nil), h.got...)
}
