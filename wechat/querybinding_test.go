package wechat_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
)

// boundCallback is a plain-mode webhook on a fresh bbolt file with one
// waiting scene (fuzzScene) and a second one (otherScene).
func boundCallback(tb testing.TB) (*wechat.Callback, *login.Service) {
	store, err := storage.OpenBolt(filepath.Join(tb.TempDir(), "bind.db"))
	if err != nil {
		tb.Fatal(err)
	}
	hub := events.NewHub()
	tb.Cleanup(func() {
		hub.Close()
		store.Close()
	})
	log := slog.New(slog.DiscardHandler)
	client := wechat.NewClient(wechat.Config{AppID: fuzzAppID, AppSecret: "x", Token: fuzzToken}, log)
	svc := login.NewService(store, hub, client, login.WithLogger(log), login.WithQRTTL(time.Hour))
	now := time.Now()
	for _, id := range []string{fuzzScene, otherScene} {
		err = store.CreateScene(tb.Context(), &login.Scene{ID: id, SecretHash: []byte("h"),
			Status: login.StatusPending, Version: 1, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: fuzzToken, Log: log}), svc
}

const otherScene = "BINDBINDBINDBINDBIND02"

// plainBody is the plaintext XML WeChat would post for ev.
func plainBody(tb testing.TB, ev wechat.Event) []byte {
	sim := &wechat.Simulator{Token: fuzzToken, AppID: fuzzAppID}
	req, err := sim.Request(tb.Context(), ev, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func sceneStatus(tb testing.TB, svc *login.Service, id string) login.Status {
	sc, err := svc.Scene(tb.Context(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return sc.StatusAt(svc.Now())
}

// TestSignedQueryBoundToBody: in plain mode a signed query is bound to the
// first body that parses as a message; within the freshness window the same
// query with another body is 403 and changes nothing, a retry with the same
// body is answered as before.
func TestSignedQueryBoundToBody(t *testing.T) {
	at := time.Now()
	victimScan := wechat.ScanEvent(fuzzScene, "oBIND_victim_000000000000001", false, at)
	genuine := plainBody(t, victimScan)
	forged := plainBody(t, wechat.ScanEvent(otherScene, "oBIND_victim_000000000000001", false, at))
	q := signedQuery("bind-nonce", at)
	other := signedQuery("other-nonce", at)

	tests := []struct {
		name         string
		firstBody    []byte
		secondQuery  url.Values
		secondBody   []byte
		secondStatus int
		otherScene   login.Status // the attacker's scene afterwards
	}{
		{"retry: same query, same body", genuine, q, genuine, http.StatusOK, login.StatusPending},
		{"attack: same query, another scene", genuine, q, forged, http.StatusForbidden, login.StatusPending},
		{"attack: same query, one byte added", genuine, q, append(bytes.Clone(genuine), ' '), http.StatusForbidden, login.StatusPending},
		{"attack: same query, JSON body", genuine, q,
			[]byte(`{"FromUserName":"oBIND_victim_000000000000001","CreateTime":1,"MsgType":"event","Event":"SCAN","EventKey":"` + otherScene + `"}`),
			http.StatusForbidden, login.StatusPending},
		{"another signed query, another body", genuine, other, forged, http.StatusOK, login.StatusConfirmed},
		{"a body that is no message does not claim the query", []byte("{not xml"), q, forged, http.StatusOK, login.StatusConfirmed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, svc := boundCallback(t)
			first := serve(cb, q, tt.firstBody, false)
			second := serve(cb, tt.secondQuery, tt.secondBody, bytes.HasPrefix(tt.secondBody, []byte("{")))
			if second.Code != tt.secondStatus {
				t.Fatalf("second request: %d %q, want %d (first: %d)", second.Code, second.Body, tt.secondStatus, first.Code)
			}
			if tt.secondStatus == http.StatusOK && bytes.Equal(tt.secondBody, tt.firstBody) && second.Body.String() != first.Body.String() {
				t.Fatalf("retry answered %q, first %q", second.Body, first.Body)
			}
			if got := sceneStatus(t, svc, otherScene); got != tt.otherScene {
				t.Fatalf("attacker's scene is %s, want %s", got, tt.otherScene)
			}
		})
	}
}

// FuzzSignedQueryRebind: once a signed query has carried a message, no other
// body with that query is taken — whatever it is, the answer is 403 (or the
// 400/413 of a body that is no message) and the waiting scene stays pending.
func FuzzSignedQueryRebind(f *testing.F) {
	cb, svc := boundCallback(f)
	at := time.Now()
	q := signedQuery("rebind-nonce", at)
	genuine := plainBody(f, wechat.Event{OpenID: "oBIND_1", Event: "unsubscribe", CreateTime: at})
	if rec := serve(cb, q, genuine, false); rec.Code != http.StatusOK {
		f.Fatalf("genuine message: %d %q", rec.Code, rec.Body)
	}
	for _, s := range seedEvents(f) {
		f.Add(s, false)
	}
	f.Add(plainBody(f, wechat.ScanEvent(fuzzScene, "oBIND_2", false, at)), false)
	f.Add([]byte(`{"FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"SCAN","EventKey":"`+fuzzScene+`"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, jsonBody bool) {
		if time.Since(at) > wechat.MaxClockSkew-time.Minute {
			t.Skip("the bound query is about to leave the freshness window")
		}
		rec := serve(cb, q, body, jsonBody)
		switch {
		case bytes.Equal(body, genuine) && !jsonBody:
			if rec.Code != http.StatusOK {
				t.Fatalf("the genuine body again: %d", rec.Code)
			}
		case rec.Code != http.StatusForbidden && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge:
			t.Fatalf("another body with a bound query: %d %q", rec.Code, rec.Body)
		}
		if got := sceneStatus(t, svc, fuzzScene); got != login.StatusPending {
			t.Fatalf("scene is %s after body %q", got, body)
		}
	})
}
