package wechat_test

// Fuzz targets for WeChat's webhook: whatever arrives, the callback answers
// with one of its documented statuses (never a panic, never a 5xx while
// storage is healthy), and a 200 is "success" or a well-formed reply — in
// safe mode one that decrypts and carries a valid signature. The messages
// go through the real Callback.ServeHTTP onto a real bbolt store.

import (
	"bytes"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
)

const (
	fuzzToken  = "fuzz-callback-token"
	fuzzAppID  = "wxfuzz000000000000"
	fuzzAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	fuzzScene  = "FUZZFUZZFUZZFUZZFUZZ01"
)

// fuzzCallback is a webhook on a fresh bbolt file with one waiting scene.
func fuzzCallback(f *testing.F, aesKey string) *wechat.Callback {
	store, err := storage.OpenBolt(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	hub := events.NewHub()
	f.Cleanup(func() {
		hub.Close()
		store.Close()
	})
	log := slog.New(slog.DiscardHandler)
	client := wechat.NewClient(wechat.Config{AppID: fuzzAppID, AppSecret: "x", Token: fuzzToken, AESKey: aesKey}, log)
	svc := login.NewService(store, hub, client, login.WithLogger(log), login.WithQRTTL(time.Hour))
	now := time.Now()
	err = store.CreateScene(f.Context(), &login.Scene{ID: fuzzScene, SecretHash: []byte("h"),
		Status: login.StatusPending, Version: 1, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	return wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: fuzzToken, Log: log})
}

func seedEvents(f *testing.F) [][]byte {
	sim := &wechat.Simulator{Token: fuzzToken, AppID: fuzzAppID}
	var seeds [][]byte
	for _, ev := range []wechat.Event{
		wechat.ScanEvent(fuzzScene, "oFUZZ_0000000000000000000001", false, time.Unix(1_700_000_000, 0)),
		wechat.ScanEvent(fuzzScene, "oFUZZ_0000000000000000000002", true, time.Unix(1_700_000_001, 0)),
		{OpenID: "oFUZZ_3", Event: "unsubscribe", CreateTime: time.Unix(1_700_000_002, 0)},
		{OpenID: "oFUZZ_4", Event: "subscribe", CreateTime: time.Unix(1_700_000_003, 0)},
		{OpenID: "oFUZZ_5", Event: "VIEW", EventKey: "https://example.com", CreateTime: time.Unix(1_700_000_004, 0), MsgID: 42},
	} {
		req, err := sim.Request(f.Context(), ev, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	seeds = append(seeds,
		[]byte(`<xml><MsgType><![CDATA[text]]></MsgType><FromUserName>o1</FromUserName><Content>hi</Content><MsgId>1</MsgId></xml>`),
		[]byte(`{"ToUserName":"gh","FromUserName":"o1","CreateTime":1,"MsgType":"event","Event":"SCAN","EventKey":"`+fuzzScene+`"}`),
		[]byte(`<xml><FromUserName>`+strings.Repeat("o", 200)+`</FromUserName></xml>`),
		[]byte(`<!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>`),
	)
	return seeds
}

// signedQuery is the query WeChat sends, signed at now with nonce.
func signedQuery(nonce string, now time.Time) url.Values {
	ts := strconv.FormatInt(now.Unix(), 10)
	q := url.Values{}
	q.Set("timestamp", ts)
	q.Set("nonce", nonce)
	q.Set("signature", util.Signature(fuzzToken, ts, nonce))
	q.Set("openid", "oFUZZ")
	return q
}

func serve(cb *wechat.Callback, q url.Values, body []byte, jsonBody bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/wechat/callback?"+q.Encode(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	if jsonBody {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	cb.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on an answer the webhook must never give.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch rec.Code {
	case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
	default:
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
}

func FuzzCallbackPlain(f *testing.F) {
	cb := fuzzCallback(f, "")
	for _, s := range seedEvents(f) {
		f.Add(s, "nonce123", false)
	}
	f.Add([]byte(`{"MsgType":"event","Event":"SCAN","FromUserName":"o","EventKey":"x","List":{"a":1}}`), "n", true)
	f.Fuzz(func(t *testing.T, body []byte, nonce string, jsonBody bool) {
		rec := serve(cb, signedQuery(nonce, time.Now()), body, jsonBody)
		checkAnswer(t, rec)
		if rec.Code != http.StatusOK || rec.Body.String() == "success" {
			return
		}
		var text message.Text
		if err := xml.Unmarshal(rec.Body.Bytes(), &text); err != nil || text.MsgType != message.MsgTypeText || text.Content == "" {
			t.Fatalf("a 200 that is neither success nor a text reply: %q", rec.Body.String())
		}
	})
}

// FuzzCallbackAES drives safe mode three ways: a fuzzed message encrypted
// and signed properly (the parser behind decryption), a fuzzed Encrypt field
// signed properly (the decryption), and a fuzzed envelope with a fuzzed
// msg_signature (the checks in front).
func FuzzCallbackAES(f *testing.F) {
	cb := fuzzCallback(f, fuzzAESKey)
	for _, s := range seedEvents(f) {
		f.Add(s, "nonce123", uint8(0), "")
	}
	f.Add([]byte("AAAA"), "n", uint8(1), "")
	f.Add([]byte("<xml><Encrypt>QUFBQQ==</Encrypt></xml>"), "n", uint8(2), strings.Repeat("0", 40))
	f.Fuzz(func(t *testing.T, data []byte, nonce string, mode uint8, msgSig string) {
		now := time.Now()
		q := signedQuery(nonce, now)
		q.Set("encrypt_type", "aes")
		var body []byte
		switch mode % 3 {
		case 0:
			enc, err := util.EncryptMsg([]byte("0123456789abcdef"), data, fuzzAppID, fuzzAESKey)
			if err != nil {
				t.Fatal(err)
			}
			body = envelope(string(enc))
			q.Set("msg_signature", util.Signature(fuzzToken, q.Get("timestamp"), nonce, string(enc)))
		case 1:
			body = envelope(string(data))
			q.Set("msg_signature", util.Signature(fuzzToken, q.Get("timestamp"), nonce, string(data)))
		default:
			body = data
			q.Set("msg_signature", msgSig)
		}
		rec := serve(cb, q, body, false)
		checkAnswer(t, rec)
		if rec.Code != http.StatusOK || rec.Body.String() == "success" {
			return
		}
		var env message.ResponseEncryptedXMLMsg
		if err := xml.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("safe-mode 200 that is not an encrypted envelope: %q", rec.Body.String())
		}
		if util.Signature(fuzzToken, strconv.FormatInt(env.Timestamp, 10), env.Nonce, env.EncryptedMsg) != env.MsgSignature {
			t.Fatalf("reply signature does not verify: %q", rec.Body.String())
		}
		if _, _, err := util.DecryptMsg(fuzzAppID, env.EncryptedMsg, fuzzAESKey); err != nil {
			t.Fatalf("reply does not decrypt: %v", err)
		}
	})
}

func envelope(enc string) []byte {
	b, _ := xml.Marshal(message.EncryptedXMLMsg{ToUserName: "gh_fuzz", EncryptedMsg: enc})
	return b
}
