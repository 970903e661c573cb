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
