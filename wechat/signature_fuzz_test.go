package wechat

import (
	"encoding/json"
	"encoding/xml"
	"testing"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
)

// FuzzValidSignature: a signature is accepted exactly when it is the SHA-1
// WeChat computes, and never for an empty token, timestamp or nonce.
func FuzzValidSignature(f *testing.F) {
	f.Add("token", "1700000000", "nonce", util.Signature("token", "1700000000", "nonce"))
	f.Add("token", "1700000000", "nonce", "")
	f.Add("", "", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
	f.Fuzz(func(t *testing.T, token, timestamp, nonce, sig string) {
		want := util.Signature(token, timestamp, nonce)
		got := ValidSignature(token, timestamp, nonce, sig)
		if got != (sig == want && token != "" && timestamp != "" && nonce != "") {
			t.Fatalf("ValidSignature(%q, %q, %q, %q) = %v; WeChat's signature is %q", token, timestamp, nonce, sig, got, want)
		}
		if ok := token != "" && timestamp != "" && nonce != ""; ValidSignature(token, timestamp, nonce, want) != ok {
			t.Fatalf("the correct signature gave %v", !ok)
		}
	})
}

// FuzzValidMsgSignature: the safe-mode check accepts exactly the signature
// over the envelope's Encrypt field, whatever the body.
func FuzzValidMsgSignature(f *testing.F) {
	env, _ := xml.Marshal(message.EncryptedXMLMsg{ToUserName: "gh", EncryptedMsg: "QUJD"})
	f.Add(env, "1700000000", "nonce", util.Signature("tok", "1700000000", "nonce", "QUJD"), false)
	f.Add([]byte(`{"Encrypt":"QUJD"}`), "1", "n", "", true)
	f.Fuzz(func(t *testing.T, body []byte, timestamp, nonce, sig string, jsonBody bool) {
		ct := "text/xml"
		if jsonBody {
			ct = "application/json"
		}
		if !validMsgSignature("tok", timestamp, nonce, sig, body, ct) {
			return
		}
		// Accepted: the envelope must parse and the signature must be WeChat's.
		var e message.EncryptedXMLMsg
		var err error
		if jsonBody {
			err = json.Unmarshal(body, &e)
		} else {
			err = xml.Unmarshal(body, &e)
		}
		if err != nil || e.EncryptedMsg == "" || util.Signature("tok", timestamp, nonce, e.EncryptedMsg) != sig {
			t.Fatalf("accepted a signature that is not WeChat's: body %q sig %q", body, sig)
		}
	})
}
