package main

import (
	"io"
	"strings"
	"testing"

	"wxlogin/login"
)

// TestLoginMethodsConfig: WXLOGIN_METHODS takes a subset of qr, code and
// oauth; anything else stops the start naming the variable. Demo mode offers
// all three; a real account defaults to qr. Only the code method works
// without WECHAT_APPSECRET, since it calls none of WeChat's APIs.
func TestLoginMethodsConfig(t *testing.T) {
	real := map[string]string{"WECHAT_APPID": "wx1234", "WECHAT_APPSECRET": "s", "WECHAT_TOKEN": "t"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    login.Methods
		wantErr string
	}{
		{"demo default", nil, login.Methods{QR: true, Code: true, OAuth: true}, ""},
		{"real default", real, login.Methods{QR: true}, ""},
		{"code and qr", with(real, "WXLOGIN_METHODS", " code, qr "), login.Methods{QR: true, Code: true}, ""},
		{"code only, no secret", with(with(real, "WECHAT_APPSECRET", ""), "WXLOGIN_METHODS", "code"), login.Methods{Code: true}, ""},
		{"qr needs the secret", with(real, "WECHAT_APPSECRET", ""), login.Methods{}, "WECHAT_APPSECRET"},
		{"oauth needs the secret", with(with(real, "WECHAT_APPSECRET", ""), "WXLOGIN_METHODS", "code,oauth"), login.Methods{}, "WECHAT_APPSECRET"},
		{"unknown", with(real, "WXLOGIN_METHODS", "qr,sms"), login.Methods{}, "WXLOGIN_METHODS"},
		{"twice", with(real, "WXLOGIN_METHODS", "qr,QR"), login.Methods{}, "WXLOGIN_METHODS"},
		{"empty list", with(real, "WXLOGIN_METHODS", ","), login.Methods{}, "WXLOGIN_METHODS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := with(tc.env, "WXLOGIN_ADDR", "127.0.0.1:0")
			cfg, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Methods != tc.want {
				t.Errorf("methods = %+v, want %+v", cfg.Methods, tc.want)
			}
		})
	}
}

// TestForwardAndCodePageConfig: the forwarding target and the code method's
// page settings are checked at start; a bad one names its variable.
func TestForwardAndCodePageConfig(t *testing.T) {
	real := map[string]string{"WECHAT_APPID": "wx1234", "WECHAT_APPSECRET": "s", "WECHAT_TOKEN": "t", "WXLOGIN_ADDR": "127.0.0.1:0"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"forward https", with(real, "WXLOGIN_FORWARD_URL", "https://example.com/wechat?site=1"), ""},
		{"forward relative", with(real, "WXLOGIN_FORWARD_URL", "/wechat"), "WXLOGIN_FORWARD_URL"},
		{"forward ftp", with(real, "WXLOGIN_FORWARD_URL", "ftp://example.com/"), "WXLOGIN_FORWARD_URL"},
		{"forward with user", with(real, "WXLOGIN_FORWARD_URL", "https://u:p@example.com/"), "WXLOGIN_FORWARD_URL"},
		{"forward to itself", with(with(real, "WXLOGIN_PUBLIC_URL", "https://login.example.com"), "WXLOGIN_FORWARD_URL", "https://login.example.com/wechat/callback"), "WXLOGIN_FORWARD_URL"},
		{"timeout too long", with(real, "WXLOGIN_FORWARD_TIMEOUT", "5s"), "WXLOGIN_FORWARD_TIMEOUT"},
		{"timeout not a duration", with(real, "WXLOGIN_FORWARD_TIMEOUT", "soon"), "WXLOGIN_FORWARD_TIMEOUT"},
		{"timeout 2s", with(real, "WXLOGIN_FORWARD_TIMEOUT", "2s"), ""},
		{"follow QR https", with(real, "WXLOGIN_FOLLOW_QR", "https://example.com/follow.png"), ""},
		{"follow QR path", with(real, "WXLOGIN_FOLLOW_QR", "/static/follow.png"), ""},
		{"follow QR script", with(real, "WXLOGIN_FOLLOW_QR", "javascript:alert(1)"), "WXLOGIN_FOLLOW_QR"},
		{"follow QR other host by //", with(real, "WXLOGIN_FOLLOW_QR", "//evil.example/x.png"), "WXLOGIN_FOLLOW_QR"},
		{"account name too long", with(real, "WXLOGIN_ACCOUNT_NAME", strings.Repeat("名", 30)), "WXLOGIN_ACCOUNT_NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(nil, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}
