package login_test

import (
	"strings"
	"testing"

	"wxlogin/login"
)

// FuzzParseLoginCode: whatever the content, a code that is accepted is six
// ASCII digits, and parsing it again gives itself.
func FuzzParseLoginCode(f *testing.F) {
	for _, s := range []string{"123456", " ０１２３４５ ", "12345", "abcdef", "\u3000987654\u3000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		code, ok := login.ParseLoginCode(content)
		if !ok {
			if code != "" {
				t.Fatalf("refused %q but returned %q", content, code)
			}
			return
		}
		if len(code) != login.LoginCodeDigits || strings.Trim(code, "0123456789") != "" {
			t.Fatalf("%q gave code %q", content, code)
		}
		if again, ok := login.ParseLoginCode(code); !ok || again != code {
			t.Fatalf("code %q does not parse as itself", code)
		}
	})
}
