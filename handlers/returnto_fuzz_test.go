package handlers

import (
	"net/url"
	"strings"
	"testing"
)

const (
	testSelf    = "https://login.example.com"
	testAllowed = "https://www.example.com"
)

// A return_to that is accepted must, resolved by a browser from the
// callback's URL, land on wxlogin's origin or an allowed one, and carry
// nothing a browser reads differently from Go (control characters, "\").
func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/account?x=1#top", "//evil.com", "/\\evil.com", "https://www.example.com/a",
		"https://evil.com", "javascript:alert(1)", "https://www.example.com@evil.com/", "/%2F%2Fevil.com",
		"http://www.example.com:80/", "HTTPS://WWW.EXAMPLE.COM", "https:evil.com", "/\t/evil.com", "https://[::1]/",
		"https://www.example.com.evil.com/", "///evil.com", "/a/../..//evil.com", "\\\\evil.com"} {
		f.Add(s)
	}
	callback, _ := url.Parse(testSelf + "/api/v1/login/oauth/callback?code=x&state=y")
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := checkReturnTo(raw, testSelf, []string{testAllowed})
		if err != nil {
			return
		}
		if strings.ContainsAny(out, "\\\t\r\n\x00") {
			t.Fatalf("%q → %q: a character browsers read differently", raw, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] < 0x21 || out[i] >= 0x7f {
				t.Fatalf("%q → %q: byte %#x", raw, out, out[i])
			}
		}
		loc, err := url.Parse(out)
		if err != nil {
			t.Fatalf("%q → %q: unparsable: %v", raw, out, err)
		}
		dest := callback.ResolveReference(loc)
		if o := originOf(dest); o != testSelf && o != testAllowed {
			t.Fatalf("%q → %q leads to %s", raw, out, o)
		}
		if dest.User != nil {
			t.Fatalf("%q → %q carries userinfo", raw, out)
		}
		if strings.HasPrefix(out, "/") && strings.HasPrefix(out, "//") {
			t.Fatalf("%q → %q is scheme-relative", raw, out)
		}
	})
}
