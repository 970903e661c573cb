package oidcprovider

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestLoginPageFromDemoPage renders the login page from the shipped demo page.
func TestLoginPageFromDemoPage(t *testing.T) {
	demo, err := os.ReadFile("../static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := loginPageTemplate(demo)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, struct{ Base, ClientName, Continue string }{
		Base: "https://login.example.com/wx", ClientName: `Evil <script>alert(1)</script>`,
		Continue: "https://login.example.com/wx/api/v1/oidc/login/abc"})
	if err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "Evil &lt;script&gt;") {
		t.Errorf("the client name is not escaped:\n%s", page)
	}
	for _, want := range []string{`data-base="https://login.example.com/wx"`,
		`data-continue="https://login.example.com/wx/api/v1/oidc/login/abc"`, `data-resume="0"`,
		`src="https://login.example.com/wx/static/demo.js"`, `id="scan"`, `id="qr"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the login page lacks %s", want)
		}
	}
	for _, m := range regexp.MustCompile(`\b(?:href|src)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if !strings.HasPrefix(m[1], "https://login.example.com/wx/") {
			t.Errorf("a link the login page would resolve against its own path: %q", m[1])
		}
	}
	if _, err := loginPageTemplate([]byte("no body here")); err == nil {
		t.Error("a page without <body> was accepted")
	}
}
