package oidcprovider

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// TestLogRouter logs as op does (slog's package-level call with an
// oidc.Error and an auth request) and checks where the record lands and
// that the state is left out.
func TestLogRouter(t *testing.T) {
	var ours, fallback bytes.Buffer
	router := slog.New(LogRouter(slog.NewTextHandler(&fallback, nil)))
	ctx := context.WithValue(context.Background(), logKey{}, slog.New(slog.NewJSONHandler(&ours, nil)))

	e := oidc.ErrInvalidRequest().WithDescription("the openid scope is required")
	e.State = "client-state-secret"
	req := &oidc.AuthRequest{ClientID: "grafana", RedirectURI: "https://grafana.example.com/cb", State: "client-state-secret"}
	router.Log(ctx, e.LogLevel(), "auth request", slog.Any("oidc_error", e), slog.Any("auth_request", req),
		slog.String("url", "https://grafana.example.com/cb?error=invalid_request&state=client-state-secret"))
	got := ours.String()
	if !strings.Contains(got, `"client_id":"grafana"`) || !strings.Contains(got, "the openid scope is required") {
		t.Fatalf("the provider's logger got %q", got)
	}
	if strings.Contains(got, "client-state-secret") {
		t.Fatalf("the state was logged: %s", got)
	}
	if fallback.Len() != 0 {
		t.Fatalf("a request's record went to the fallback: %s", fallback.String())
	}

	router.Info("registered route", "endpoint", "/keys")
	if !strings.Contains(fallback.String(), "registered route") || strings.Contains(ours.String(), "registered route") {
		t.Fatalf("a record without a request: fallback %q, ours %q", fallback.String(), ours.String())
	}
}
