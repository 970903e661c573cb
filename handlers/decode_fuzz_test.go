package handlers_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"wxlogin/handlers"
	"wxlogin/login"
)

// FuzzDecodeJSONBody: any body either decodes into exactly one request
// object or is refused as invalid (400), never a panic or another error; a
// decoded request survives a round trip unchanged.
func FuzzDecodeJSONBody(f *testing.F) {
	for _, s := range []string{
		`{"scene_id":"AAAAAAAAAAAAAAAAAAAAAA","code":"abc"}`,
		`{"scene_id":"x","openid":"o1","first_follow":true}`,
		`{"scene_id":1}`,
		`{} {}`,
		`{"code":"\u0000\ud800"}`,
		`[`,
		`null`,
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body, &handlers.TokenRequest{})
		checkDecode(t, body, &handlers.DevScanRequest{})
	})
}

func checkDecode[T any](t *testing.T, body []byte, v *T) {
	t.Helper()
	err := handlers.DecodeJSONBody(body, v)
	if err != nil {
		if login.ErrorCode(err) != login.EINVALID {
			t.Fatalf("error %v has code %q, want invalid", err, login.ErrorCode(err))
		}
		return
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encode %+v: %v", v, err)
	}
	w := new(T)
	if err := handlers.DecodeJSONBody(again, w); err != nil || !reflect.DeepEqual(v, w) {
		t.Fatalf("round trip of %q: %+v → %s → %+v (%v)", body, v, again, w, err)
	}
}
