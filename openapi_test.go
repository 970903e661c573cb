package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes checks that every route the server registers is
// in openapi.yaml and every operation there is served, with the wiring of
// build in the configuration that registers the most routes (demo mode,
// confirm links).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	env := map[string]string{
		"WXLOGIN_ADDR":        "127.0.0.1:0",
		"WXLOGIN_DB":          filepath.Join(t.TempDir(), "wxlogin.db"),
		"WECHAT_TOKEN":        "test-callback-token",
		"WXLOGIN_CONFIRM":     "link",
		"WXLOGIN_PUBLIC_URL":  "https://login.example.com",
		"WXLOGIN_ADMIN_TOKEN": testAdminToken,
	}
	cfg, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := build(context.Background(), cfg, slog.New(slog.DiscardHandler), "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	e, ok := a.handler.(*echo.Echo)
	if !ok {
		t.Fatalf("the handler is a %T, not *echo.Echo", a.handler)
	}

	served := map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // a group's catch-all for its middleware, not a route
		}
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for _, k := range sortedKeys(served) {
		if !documented[k] {
			t.Errorf("served but not in openapi.yaml: %s", k)
		}
	}
	for _, k := range sortedKeys(documented) {
		if !served[k] {
			t.Errorf("in openapi.yaml but not served: %s", k)
		}
	}
	if len(served) < 15 {
		t.Errorf("only %d routes registered; the wiring changed?", len(served))
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// openAPIPath turns Echo's /scenes/:id and /static/* into OpenAPI's
// /scenes/{id} and /static/{path}.
func openAPIPath(p string) string {
	p = echoParam.ReplaceAllString(p, "{$1}")
	if strings.HasSuffix(p, "/*") {
		p = strings.TrimSuffix(p, "*") + "{path}"
	}
	return p
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestOpenAPIDescribesAnswers runs a real login through the running service
// and checks every answer (status, content type, body schema) against the
// document, so the document says what the server does.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	// Pages are strings to the schema (kin-openapi has no HTML decoder).
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken})
	hc := &http.Client{Transport: &validatingTransport{t: t, router: router}}

	do := func(method, path, bearer, body string) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp
	}

	sc := createScene(t, srv.URL) // outside the validating client: we need its body
	do(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID, sc.Secret, "")
	do(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID, sc.Secret, "") // 429 slow_down
	do(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID, "wrong-secret", "")
	do(http.MethodGet, "/api/v1/login/scenes/AAAAAAAAAAAAAAAAAAAAAA", "x", "")
	do(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID+"/qr.png", "", "")
	do(http.MethodPost, "/api/v1/dev/scan", sc.Secret, `{"scene_id":"`+sc.SceneID+`","openid":"oOpenAPI_000000000000000001"}`)
	do(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID+"/events", sc.Secret, "")

	stream, _ := openStream(t, srv.URL, sc.SceneID, sc.Secret, "") // polls would now be too fast
	if stream == nil {
		t.Fatal("no stream after the scan")
	}
	var v viewBody
	if ev := stream.Next(t, 5*time.Second); ev.Event != "confirmed" || json.Unmarshal([]byte(ev.Data), &v) != nil || v.Code == "" {
		t.Fatalf("after the scan: %+v", ev)
	}
	do(http.MethodPost, "/api/v1/login/token", sc.Secret, `{"scene_id":"`+sc.SceneID+`","code":"wrong"}`)
	var tok tokenBody
	apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok)
	do(http.MethodPost, "/api/v1/login/token", sc.Secret, `{"scene_id":"`+sc.SceneID+`","code":"`+v.Code+`"}`) // 409
	do(http.MethodGet, "/api/v1/me", tok.AccessToken, "")
	do(http.MethodPost, "/api/v1/logout", tok.AccessToken, "")
	do(http.MethodGet, "/api/v1/me", tok.AccessToken, "") // 401
	do(http.MethodPost, "/api/v1/login/token", sc.Secret, `{"scene_id":"`+strings.Repeat("x", 5000)+`"}`)
	admin := "/api/v1/admin/users/" + tok.User.ID
	do(http.MethodGet, admin, "wrong-admin-token", "") // 401
	do(http.MethodGet, admin, testAdminToken, "")
	do(http.MethodPost, admin+"/logout", testAdminToken, "")
	do(http.MethodGet, "/api/v1/admin/backup", testAdminToken, "")
	do(http.MethodDelete, admin, testAdminToken, "")
	do(http.MethodGet, admin, testAdminToken, "")            // 404
	do(http.MethodPost, admin+"/logout", testAdminToken, "") // 404
	do(http.MethodGet, "/healthz", "", "")
	do(http.MethodGet, "/readyz", "", "")
	do(http.MethodGet, "/metrics", "", "")
	do(http.MethodGet, "/api/v1/openapi.yaml", "", "")
	do(http.MethodGet, "/api/v1/dev/config", "", "")
	code := createScene(t, srv.URL)
	do(http.MethodPost, "/api/v1/dev/code", code.Secret, `{"scene_id":"`+code.SceneID+`","code":"12345x"}`)
	do(http.MethodGet, "/", "", "")
	do(http.MethodGet, "/static/qrlogin.js", "", "")
	do(http.MethodGet, "/.well-known/openid-configuration", "", "")
	do(http.MethodGet, "/keys", "", "")
	do(http.MethodGet, "/authorize?client_id=nobody&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fx.example%2F", "", "")
	do(http.MethodGet, "/api/v1/oidc/logout", "", "")
	do(http.MethodGet, "/oidc/demo", "", "")
	do(http.MethodPost, "/wechat/callback?signature=0000000000000000000000000000000000000000&timestamp=1&nonce=x", "", "")

	resp := apiCall(t, http.MethodGet, srv.URL+"/api/v1/openapi.yaml", "", nil, nil)
	served, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(served, openAPIDocument) {
		t.Errorf("/api/v1/openapi.yaml does not serve openapi.yaml")
	}
}

// validatingTransport checks each answer against the OpenAPI document.
type validatingTransport struct {
	t      *testing.T
	router routers.Router
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	name := req.Method + " " + req.URL.Path
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.t.Errorf("%s: not in openapi.yaml: %v", name, err)
		return resp, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: resp.StatusCode,
		Header: resp.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status is an error
		},
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// A stream has no end to read to: check status and type only.
		in.Options.ExcludeResponseBody = true
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(""))
	} else {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		in.SetBodyBytes(body)
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.t.Errorf("%s → %d does not match openapi.yaml: %v", name, resp.StatusCode, err)
	} else {
		v.t.Logf("%s → %d %s: matches", name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, nil
}
