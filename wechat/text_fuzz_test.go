package wechat_test

import (
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/silenceper/wechat/v2/officialaccount/message"

	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
)

// fuzzLoginCode is held by the waiting scene FuzzCallbackText's callback knows.
const fuzzLoginCode = "135790"

// FuzzCallbackText drives the text-message path with any content (shapes,
// sizes, encodings) and MsgId: the answer is "success" for anything without a
// login code's shape, and otherwise a worded text reply; never an error,
// never a crash.
func FuzzCallbackText(f *testing.F) {
	store, err := storage.OpenBolt(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	hub := events.NewHub()
	f.Cleanup(func() {
		hub.Close()
		store.Close()
	})
	log := slog.New(slog.DiscardHandler)
	client := wechat.NewClient(wechat.Config{AppID: fuzzAppID, AppSecret: "x", Token: fuzzToken}, log)
	// A lockout longer than any run would hide the miss path: a high limit keeps it reachable.
	svc := login.NewService(store, hub, client, login.WithLogger(log), login.WithQRTTL(time.Hour),
		login.WithMethods(login.Methods{QR: true, Code: true}),
		login.WithMissPolicy(login.MissPolicy{Limit: 1 << 30, Window: time.Minute, Lockout: time.Minute}))
	now := time.Now()
	err = store.CreateScene(f.Context(), &login.Scene{ID: fuzzScene, SecretHash: []byte("h"), LoginCode: fuzzLoginCode,
		Status: login.StatusPending, Version: 1, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	cb := wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: fuzzToken, Log: log})
	sim := &wechat.Simulator{URL: "http://fuzz.invalid/wechat/callback", Token: fuzzToken, AppID: fuzzAppID}

	for _, seed := range []string{fuzzLoginCode, " 135790\n", "１３５７９０", "000000", "hello", "12345", "", strings.Repeat("9", 5000), "\xff\xfe135790"} {
		f.Add(seed, int64(1))
	}
	f.Fuzz(func(t *testing.T, content string, msgID int64) {
		if !utf8.ValidString(content) || strings.ContainsFunc(content, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' }) {
			return // WeChat sends UTF-8 XML text; invalid characters do not survive its XML
		}
		req, err := sim.Request(t.Context(), wechat.TextMessage("oFUZZ_text", content, msgID, time.Now()), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		rec := serve(cb, req.URL.Query(), body, false)
		checkAnswer(t, rec)
		_, isCode := login.ParseLoginCode(content)
		switch {
		case rec.Code == http.StatusBadRequest:
			return // silenceper could not parse it (an MsgId beyond int64 and the like)
		case rec.Code != http.StatusOK:
			t.Fatalf("status %d for content %q", rec.Code, content)
		case !isCode:
			if rec.Body.String() != "success" {
				t.Fatalf("content %q is not a login code but got %q", content, rec.Body.String())
			}
		default:
			var text message.Text
			if err := xml.Unmarshal(rec.Body.Bytes(), &text); err != nil || text.Content == "" {
				t.Fatalf("a login code %q got no text reply: %q", content, rec.Body.String())
			}
		}
	})
}
