package handlers

import "testing"

func TestCheckReturnTo(t *testing.T) {
	allowed := []string{testAllowed, "http://127.0.0.1:3000"}
	for _, c := range []struct {
		raw, want string
	}{
		{"", "/"},
		{"/", "/"},
		{"/account?tab=1#top", "/account?tab=1#top"},
		{"/%2F%2Fevil.com", "/%2F%2Fevil.com"}, // one path segment on our origin, not a host
		{"https://www.example.com/after", "https://www.example.com/after"},
		{"https://www.example.com:443/after", "https://www.example.com:443/after"},
		{"HTTPS://WWW.EXAMPLE.COM/x", "https://WWW.EXAMPLE.COM/x"},
		{"https://login.example.com/", "https://login.example.com/"},
		{"http://127.0.0.1:3000/app", "http://127.0.0.1:3000/app"},
	} {
		got, err := checkReturnTo(c.raw, testSelf, allowed)
		if err != nil || got != c.want {
			t.Errorf("checkReturnTo(%q) = %q, %v; want %q", c.raw, got, err, c.want)
		}
	}
	for _, raw := range []string{
		"//evil.com", "///evil.com", "/\\evil.com", "\\\\evil.com", "/\t/evil.com", "/\n/evil.com", "/ /x",
		"https://evil.com/", "http://www.example.com/", // wrong scheme for the allowed origin
		"https://www.example.com.evil.com/", "https://www.example.com@evil.com/", "https://user:pw@www.example.com/",
		"https:www.example.com", "javascript:alert(1)", "data:text/html,hi", "evil.com", "./x", "x/y",
		"https://www.example.com:8443/", "http://127.0.0.1:3001/", "ftp://www.example.com/", "/é",
		"/" + string(make([]byte, maxReturnTo)),
	} {
		if got, err := checkReturnTo(raw, testSelf, allowed); err == nil {
			t.Errorf("checkReturnTo(%q) = %q; want refused", raw, got)
		}
	}
}
