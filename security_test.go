package main

// Attacks on a running wxlogin, through the real server started by run. Each
// test shows the attack refused and, where it could write, that storage holds
// exactly what it held before: the server is stopped, the bbolt file is read
// record by record, and the two readings are compared.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
	bolt "go.etcd.io/bbolt"

	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
	"wxlogin/wechat/wechattest"
)

// testAESKey is a 43-character EncodingAESKey, as WeChat's console shows it.
const testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

const testToken = "test-callback-token" // startTestServer's WECHAT_TOKEN

// --- helpers shared with confirm_test.go -----------------------------------

// secView is the poll answer.
type secView struct {
	SceneID string `json:"scene_id"`
	Status  string `json:"status"`
	Code    string `json:"code"`
	User    *struct {
		LoginCount int64 `json:"login_count"`
	} `json:"user"`
}

// secToken is the token exchange answer.
type secToken struct {
	AccessToken string `json:"access_token"`
	User        struct {
		LoginCount int64 `json:"login_count"`
	} `json:"user"`
}

// secError is the API's error shape.
type secError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// secSimulator plays WeChat for the demo account of srv; aesKey "" = plain mode.
func secSimulator(srv *testServer, aesKey string) *wechat.Simulator {
	return &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: testToken, AppID: demoAppID, AESKey: aesKey}
}

// createSceneFrom creates a scene as a browser with user agent ua behind a
// proxy that says the client is xff ("" = no X-Forwarded-For).
func createSceneFrom(t *testing.T, base, xff, ua string) sceneInfo {
	t.Helper()
	resp, body := createSceneRaw(t, base, xff, ua)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create scene: %d %s", resp.StatusCode, body)
	}
	var s sceneInfo
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func createSceneRaw(t *testing.T, base, xff, ua string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/login/scenes", nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create scene: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// longPollAsync starts GET ?wait=secs and delivers its answer.
func longPollAsync(t *testing.T, base string, sc sceneInfo, secs int) <-chan secView {
	out := make(chan secView, 1)
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/login/scenes/"+sc.SceneID+"?wait="+strconv.Itoa(secs), nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	go func() {
		var v secView
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				v.Status = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
			} else if err := json.Unmarshal(b, &v); err != nil {
				v.Status = "undecodable: " + string(b)
			}
		} else {
			v.Status = "error: " + err.Error()
		}
		out <- v
	}()
	return out
}

// storeDump is every record of a bbolt file: bucket → key → value.
type storeDump map[string]map[string]string

// storeAfterStop stops srv (its cleanup then finds it stopped) and reads its
// database file.
func storeAfterStop(t *testing.T, srv *testServer, dbPath string) storeDump {
	t.Helper()
	err := srv.Stop()
	srv.done <- err // Stop may be called again at cleanup: give it the same answer
	if err != nil {
		t.Fatalf("stop server: %v", err)
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", dbPath, err)
	}
	defer db.Close()
	return dumpBolt(t, db)
}

// dumpStore checkpoints a live store's journal into bbolt and dumps the file.
func dumpStore(t *testing.T, store *storage.Bolt) storeDump {
	t.Helper()
	if err := store.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	return dumpBolt(t, store.DB())
}

func dumpBolt(t *testing.T, db *bolt.DB) storeDump {
	t.Helper()
	d := storeDump{}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			d[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d storeDump) user(t *testing.T, openID string) *login.User {
	t.Helper()
	raw, ok := d["users"][openID]
	if !ok {
		return nil
	}
	var u login.User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		t.Fatal(err)
	}
	return &u
}

func (d storeDump) scene(t *testing.T, id string) *login.Scene {
	t.Helper()
	raw, ok := d["scenes"][id]
	if !ok {
		t.Fatalf("scene %s not in storage", id)
	}
	var s login.Scene
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// sameAs fails the test where after differs from d.
func (d storeDump) sameAs(t *testing.T, after storeDump) {
	t.Helper()
	for _, pair := range [][2]storeDump{{d, after}, {after, d}} {
		for bucket, m := range pair[0] {
			for k, v := range m {
				if w, ok := pair[1][bucket][k]; !ok || w != v {
					t.Errorf("storage changed: bucket %s key %q: %q vs %q", bucket, k, v, w)
				}
			}
		}
	}
}

// sendRaw posts body to the webhook with query q.
func sendRaw(t *testing.T, base string, q url.Values, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/wechat/callback?"+q.Encode(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// captured is one signed callback, kept so it can be replayed byte for byte.
type captured struct {
	q    url.Values
	body []byte
}

func capture(t *testing.T, sim *wechat.Simulator, ev wechat.Event, at time.Time) captured {
	t.Helper()
	req, err := sim.Request(t.Context(), ev, at)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	return captured{q: req.URL.Query(), body: body}
}

func (c captured) with(key, value string) captured {
	q := url.Values{}
	for k, v := range c.q {
		q[k] = append([]string(nil), v...)
	}
	q.Set(key, value)
	return captured{q: q, body: c.body}
}

// signedGarbage is a safe-mode request whose signatures are right but whose
// Encrypt field is enc (which does not decrypt to a message for us).
func signedGarbage(enc string, at time.Time) captured {
	ts := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{}
	q.Set("timestamp", ts)
	q.Set("nonce", "n0nce")
	q.Set("signature", util.Signature(testToken, ts, "n0nce"))
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", util.Signature(testToken, ts, "n0nce", enc))
	body, _ := xml.Marshal(message.EncryptedXMLMsg{ToUserName: "gh_x", EncryptedMsg: enc})
	return captured{q: q, body: body}
}

// replyText is the text WeChat's answer carries ("" for "success"),
// decrypted and its signature checked in safe mode.
func replyText(t *testing.T, sim *wechat.Simulator, status int, body string) string {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("callback answered %d: %s", status, body)
	}
	if body == "success" {
		return ""
	}
	raw := []byte(body)
	if sim.AESKey != "" {
		var env message.ResponseEncryptedXMLMsg
		if err := xml.Unmarshal(raw, &env); err != nil {
			t.Fatalf("safe-mode reply %q: %v", body, err)
		}
		if util.Signature(sim.Token, strconv.FormatInt(env.Timestamp, 10), env.Nonce, env.EncryptedMsg) != env.MsgSignature {
			t.Fatalf("safe-mode reply has a bad signature: %q", body)
		}
		var err error
		if _, raw, err = util.DecryptMsg(sim.AppID, env.EncryptedMsg, sim.AESKey); err != nil {
			t.Fatalf("safe-mode reply does not decrypt: %v", err)
		}
	}
	var text message.Text
	if err := xml.Unmarshal(raw, &text); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return string(text.Content)
}

// --- 1 and 2: safe mode, signatures, freshness ------------------------------

// TestCallbackAttacksChangeNothing sends forged, stale, tampered and
// oversized callbacks in plain and safe (AES) mode; every one is refused and
// the database afterwards is byte for byte what it was before. A genuine
// scan afterwards confirms the untouched scene with count 1.
func TestCallbackAttacksChangeNothing(t *testing.T) {
	inBothModes(t, func(t *testing.T, aes string, env map[string]string) {
		srv := startTestServer(t, env)
		sc := createScene(t, srv.URL)
		before := storeAfterStop(t, srv, env["WXLOGIN_DB"])

		srv = startTestServer(t, env)
		sim := secSimulator(srv, aes)
		const victim = "oATTACK_victim_000000000000001"
		now := time.Now()
		scan := wechat.ScanEvent(sc.SceneID, victim, false, now)
		good := capture(t, sim, scan, now)

		otherKey := *sim
		otherKey.AESKey = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
		otherApp := *sim
		otherApp.AppID = "wxsomeoneelse00000"
		wrongToken := *sim
		wrongToken.Token = "not-the-token"

		attacks := []struct {
			name   string
			req    captured
			status int
		}{
			{"no signature", good.with("signature", ""), http.StatusForbidden},
			{"wrong signature", good.with("signature", strings.Repeat("0", 40)), http.StatusForbidden},
			{"signed with another token", capture(t, &wrongToken, scan, now), http.StatusForbidden},
			{"signature of another timestamp", good.with("timestamp", strconv.FormatInt(now.Unix()-1, 10)), http.StatusForbidden},
			{"stale: 6 minutes old", capture(t, sim, scan, now.Add(-6*time.Minute)), http.StatusForbidden},
			{"from the future: 6 minutes ahead", capture(t, sim, scan, now.Add(6*time.Minute)), http.StatusForbidden},
			{"oversized body", captured{q: good.q, body: bytes.Repeat([]byte("<"), wechat.MaxCallbackBody+1)}, http.StatusRequestEntityTooLarge},
		}
		if aes == "" {
			attacks = append(attacks,
				struct {
					name   string
					req    captured
					status int
				}{"not XML", captured{q: good.q, body: []byte("{not xml")}, http.StatusBadRequest})
		} else {
			rnd := make([]byte, 96)
			for i := range rnd {
				rnd[i] = byte(i * 7)
			}
			more := []struct {
				name   string
				req    captured
				status int
			}{
				{"wrong msg_signature", good.with("msg_signature", strings.Repeat("a", 40)), http.StatusForbidden},
				{"no msg_signature", good.with("msg_signature", ""), http.StatusForbidden},
				{"body does not decrypt", signedGarbage(base64.StdEncoding.EncodeToString(rnd), now), http.StatusForbidden},
				{"body not base64", signedGarbage("!!not base64!!", now), http.StatusForbidden},
				{"encrypted with another key", capture(t, &otherKey, scan, now), http.StatusForbidden},
				{"encrypted for another app", capture(t, &otherApp, scan, now), http.StatusForbidden},
				{"envelope not XML", captured{q: good.q, body: []byte("<xml><Encrypt>")}, http.StatusForbidden},
			}
			attacks = append(attacks, more...)
		}
		for _, a := range attacks {
			status, body := sendRaw(t, srv.URL, a.req.q, a.req.body)
			if status != a.status {
				t.Errorf("%s: status %d, want %d (%q)", a.name, status, a.status, body)
			}
		}
		before.sameAs(t, storeAfterStop(t, srv, env["WXLOGIN_DB"]))

		// The genuine message, sent afterwards, logs the victim in once.
		srv = startTestServer(t, env)
		sim = secSimulator(srv, aes)
		status, body := sendRaw(t, srv.URL, good.q, good.body)
		if aes != "" && (!strings.Contains(body, "<Encrypt>") || strings.Contains(body, "登录成功")) {
			t.Fatalf("safe-mode reply is not encrypted: %q", body)
		}
		if text := replyText(t, sim, status, body); !strings.Contains(text, "这是你第 1 次登录") {
			t.Fatalf("genuine scan after the attacks: %q", text)
		}
	})
}

// TestSafeModeEmptyReplyIsSuccess: messages that need no reply (a plain
// follow, an unfollow) are answered "success" in safe mode too, not an
// encrypted empty string.
func TestSafeModeEmptyReplyIsSuccess(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WECHAT_AES_KEY": testAESKey})
	sim := secSimulator(srv, testAESKey)
	for _, ev := range []wechat.Event{
		{OpenID: "oEMPTY_0000000000000000000001", Event: "subscribe", CreateTime: time.Now()},
		{OpenID: "oEMPTY_0000000000000000000001", Event: "unsubscribe", CreateTime: time.Now()},
		{OpenID: "oEMPTY_0000000000000000000001", Event: "VIEW", EventKey: "https://example.com", CreateTime: time.Now()},
	} {
		r, err := sim.Send(t.Context(), ev)
		if err != nil || r.Status != http.StatusOK || r.Body != "success" {
			t.Errorf("%s: %v %d %q, want 200 success", ev.Event, err, r.Status, r.Body)
		}
	}
}

// TestCallbackReplayedThreeTimes: WeChat's retries (the same bytes, and the
// same event with a fresh signature) count once and get the same text;
// likewise when the three arrive at once. Plain and safe mode.
func TestCallbackReplayedThreeTimes(t *testing.T) {
	inBothModes(t, func(t *testing.T, aes string, env map[string]string) {
		srv := startTestServer(t, env)
		sim := secSimulator(srv, aes)
		const seqUser, concUser = "oREPLAY_sequential_0000000001", "oREPLAY_concurrent_0000000001"

		// Sequential.
		sc1 := createScene(t, srv.URL)
		ev1 := wechat.ScanEvent(sc1.SceneID, seqUser, true, time.Now())
		msg := capture(t, sim, ev1, time.Now())
		var texts []string
		for range 3 {
			status, body := sendRaw(t, srv.URL, msg.q, msg.body)
			texts = append(texts, replyText(t, sim, status, body))
		}
		again, err := sim.Send(t.Context(), ev1) // a retry signed anew
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, again.Text)
		for _, txt := range texts {
			if txt != texts[0] || !strings.Contains(txt, "这是你第 1 次登录") {
				t.Fatalf("replies differ or are wrong: %q", texts)
			}
		}

		// Concurrent.
		sc2 := createScene(t, srv.URL)
		ev2 := wechat.ScanEvent(sc2.SceneID, concUser, false, time.Now())
		msg = capture(t, sim, ev2, time.Now())
		var wg sync.WaitGroup
		results := make([][2]any, 3)
		for i := range 3 {
			wg.Go(func() {
				status, body := sendRaw(t, srv.URL, msg.q, msg.body)
				results[i] = [2]any{status, body}
			})
		}
		wg.Wait()
		texts = texts[:0]
		for _, r := range results {
			texts = append(texts, replyText(t, sim, r[0].(int), r[1].(string)))
		}
		for _, txt := range texts {
			if txt != texts[0] || !strings.Contains(txt, "这是你第 1 次登录") {
				t.Fatalf("concurrent replies differ or are wrong: %q", texts)
			}
		}

		st := storeAfterStop(t, srv, env["WXLOGIN_DB"])
		for _, id := range []string{seqUser, concUser} {
			if u := st.user(t, id); u == nil || u.LoginCount != 1 {
				t.Errorf("user %s in storage: %+v", id, u)
			}
		}
		if n := len(st["callbacks"]); n != 2 {
			t.Errorf("%d dedupe records, want 2 (one per message)", n)
		}
	})
}

// TestDedupeKeysKeptADay: a handled message's key is kept for a day (a retry
// within it changes nothing and gets the same reply), and the sweeper purges
// it after. The clock is injected; the store is a real bbolt file.
func TestDedupeKeysKeptADay(t *testing.T) {
	ctx := t.Context()
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "wxlogin.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hub := events.NewHub()
	defer hub.Close()
	var mu sync.Mutex
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	log := slog.New(slog.DiscardHandler)
	client := wechat.NewClient(wechat.Config{AppID: demoAppID, AppSecret: "x", Token: testToken}, log)
	svc := login.NewService(store, hub, client, login.WithClock(clock), login.WithLogger(log))
	cb := wechat.NewCallback(client, svc, wechat.CallbackConfig{Token: testToken, Log: log})

	start := clock()
	sc := &login.Scene{ID: "DEDUPEDEDUPEDEDUPE0001", SecretHash: []byte("h"), Status: login.StatusPending, Version: 1,
		CreatedAt: start, ExpiresAt: start.Add(2 * time.Minute)}
	if err := store.CreateScene(ctx, sc); err != nil {
		t.Fatal(err)
	}
	sim := &wechat.Simulator{Token: testToken, AppID: demoAppID}
	ev := wechat.ScanEvent(sc.ID, "oDEDUPE_0000000000000000000001", false, start)
	deliver := func() string { // WeChat's retry, signed at the current time
		t.Helper()
		req, err := sim.Request(ctx, ev, clock())
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		cb.ServeHTTP(rec, req)
		return replyText(t, sim, rec.Code, rec.Body.String())
	}
	records := func() int {
		return len(dumpStore(t, store)["callbacks"])
	}

	first := deliver()
	if !strings.Contains(first, "这是你第 1 次登录") {
		t.Fatalf("first delivery: %q", first)
	}
	advance(23 * time.Hour)
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := records(); n != 1 {
		t.Fatalf("after 23 h: %d dedupe records, want 1", n)
	}
	if again := deliver(); again != first {
		t.Fatalf("retry after 23 h got another reply:\n%q\n%q", first, again)
	}
	if u, err := store.User(ctx, ev.OpenID); err != nil || u.LoginCount != 1 {
		t.Fatalf("after the retry: %+v %v", u, err)
	}

	advance(time.Hour + time.Second)
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	d := dumpStore(t, store)
	if len(d["callbacks"]) != 0 || len(d["callbacks_due"]) != 0 {
		t.Fatalf("after 24 h: %d records, %d index entries left", len(d["callbacks"]), len(d["callbacks_due"]))
	}
	// The key is gone; the scene is long expired, so the message now changes
	// nothing either and the count stays.
	if late := deliver(); !strings.Contains(late, "expired") {
		t.Fatalf("message after the purge: %q", late)
	}
	if u, _ := store.User(ctx, ev.OpenID); u.LoginCount != 1 {
		t.Fatalf("count after the purge: %d", u.LoginCount)
	}
}

// --- 3: limits ---------------------------------------------------------------

// TestJSONBodyLimit: JSON bodies over 4 KiB are 413 in the error shape,
// whether the length is announced or not, and change nothing.
func TestJSONBodyLimit(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	r, err := secSimulator(srv, "").Send(t.Context(), wechat.ScanEvent(sc.SceneID, "oBODY_00000000000000000000001", false, time.Now()))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan: %v %d", err, r.Status)
	}
	code := login.CodeFor(sc.Secret, sc.SceneID)
	big, _ := json.Marshal(map[string]string{"scene_id": sc.SceneID, "code": code, "pad": strings.Repeat("x", 5<<10)})
	for _, path := range []string{"/api/v1/login/token", "/api/v1/dev/scan"} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = io.MultiReader(bytes.NewReader(big)) // no length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+sc.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e secError
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(raw, &e)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error != "too_large" || e.Message == "" {
				t.Errorf("%s chunked=%v: %d %s", path, chunked, resp.StatusCode, raw)
			}
		}
	}
	// The code was not used by the refused requests.
	var tok secToken
	if resp := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret,
		map[string]string{"scene_id": sc.SceneID, "code": code}, &tok); resp.StatusCode != http.StatusOK || tok.User.LoginCount != 1 {
		t.Fatalf("exchange after the refusals: %d %+v", resp.StatusCode, tok)
	}
}

// TestSceneRateLimit: scene creation is a token bucket per client IP; the IP
// comes from X-Forwarded-For only when the peer is a trusted proxy. A refused
// creation stores nothing.
func TestSceneRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		trusted string
		// xff of each request, and whether it is admitted
		steps     []rateStep
		wantIPs   map[string]int // scenes stored per client IP
		forwarded bool
	}{
		{
			name:    "no trusted proxies: X-Forwarded-For is ignored",
			trusted: "",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.2", true}, {"203.0.113.3", true},
				{"203.0.113.4", false}, {"", false}},
			wantIPs: map[string]int{"127.0.0.1": 3},
		},
		{
			name:    "peer is not a trusted proxy: ignored",
			trusted: "10.9.9.9",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.2", true}, {"203.0.113.3", true},
				{"203.0.113.4", false}},
			wantIPs: map[string]int{"127.0.0.1": 3},
		},
		{
			name:    "trusted proxy: one bucket per forwarded client",
			trusted: "127.0.0.1",
			steps: []rateStep{{"203.0.113.1", true}, {"203.0.113.1", true}, {"203.0.113.1", true},
				{"203.0.113.1", false},
				// A client cannot pick its address by prepending one: the
				// proxy appends the real peer, and that is what counts.
				{"198.51.100.77, 203.0.113.1", false},
				{"203.0.113.2", true}},
			wantIPs: map[string]int{"203.0.113.1": 3, "203.0.113.2": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db"),
				"WXLOGIN_SCENE_RATE": "3", "WXLOGIN_TRUSTED_PROXIES": tt.trusted}
			srv := startTestServer(t, env)
			for i, s := range tt.steps {
				resp, body := createSceneRaw(t, srv.URL, s.xff, "")
				if s.admitted {
					if resp.StatusCode != http.StatusCreated {
						t.Fatalf("step %d (%s): %d %s", i, s.xff, resp.StatusCode, body)
					}
					continue
				}
				var e secError
				_ = json.Unmarshal(body, &e)
				ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusTooManyRequests || e.Error != "rate_limited" || ra < 1 || ra > 20 {
					t.Fatalf("step %d (%s): %d Retry-After %q %s", i, s.xff, resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
			}
			st := storeAfterStop(t, srv, env["WXLOGIN_DB"])
			got := map[string]int{}
			for id := range st["scenes"] {
				got[st.scene(t, id).ClientIP]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantIPs) {
				t.Fatalf("scenes stored per IP: %v, want %v", got, tt.wantIPs)
			}
		})
	}
}

type rateStep struct {
	xff      string
	admitted bool
}

// TestStreamCaps: open streams and long-polls are capped per client IP (429)
// and in total (503); a closed stream frees its slot.
func TestStreamCaps(t *testing.T) {
	srv := startTestServer(t, map[string]string{
		"WXLOGIN_MAX_STREAMS": "3", "WXLOGIN_MAX_STREAMS_PER_IP": "2", "WXLOGIN_TRUSTED_PROXIES": "127.0.0.1",
	})
	sc := createScene(t, srv.URL)
	// get opens a stream (or a long-poll) as client xff. An open stream is
	// returned with its body to close; a refusal is read and closed.
	get := func(path, xff string) (*http.Response, secError) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+path, nil)
		req.Header.Set("Authorization", "Bearer "+sc.Secret)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e secError
		if resp.StatusCode == http.StatusOK {
			t.Cleanup(func() { resp.Body.Close() })
			return resp, e
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		return resp, e
	}
	stream := func(xff string) (*http.Response, secError) { return get("/events", xff) }
	refused := func(resp *http.Response, e secError, status int, code string) {
		t.Helper()
		if resp.StatusCode != status || e.Error != code || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("want %d %s with Retry-After, got %d %+v Retry-After %q", status, code, resp.StatusCode, e, resp.Header.Get("Retry-After"))
		}
	}

	a1, _ := stream("203.0.113.1")
	if a2, _ := stream("203.0.113.1"); a1.StatusCode != http.StatusOK || a2.StatusCode != http.StatusOK {
		t.Fatal("the first two streams of one IP were refused")
	}
	resp, e := stream("203.0.113.1")
	refused(resp, e, http.StatusTooManyRequests, "too_many_streams")
	resp, e = get("?wait=5", "203.0.113.1") // a long-poll counts as a stream
	refused(resp, e, http.StatusTooManyRequests, "too_many_streams")

	if b1, _ := stream("203.0.113.2"); b1.StatusCode != http.StatusOK {
		t.Fatal("another IP's first stream was refused")
	}
	resp, e = stream("203.0.113.3")
	refused(resp, e, http.StatusServiceUnavailable, "unavailable")

	a1.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := stream("203.0.113.3")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not free its slot: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWeChatQuota: WeChat's quota error (45009) is 503 wechat_quota for every
// request, and logged once, not per request.
func TestWeChatQuota(t *testing.T) {
	standIn := weChat // the test binary's WeChat (main_test.go)
	standIn.SetFault(wechattest.Fault{QRErrCode: wechat.ErrCodeQuota, QRErrMsg: "reach max api daily quota limit"})
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })

	env := map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db")}
	srv := startTestServer(t, env)
	for range 5 {
		resp, body := createSceneRaw(t, srv.URL, "", "")
		var e secError
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusServiceUnavailable || e.Error != "wechat_quota" || !strings.Contains(e.Message, "45009") {
			t.Fatalf("create under quota: %d %s", resp.StatusCode, body)
		}
	}
	if n := strings.Count(srv.Logs.String(), "45009"); n != 1 {
		t.Errorf("the quota error was logged %d times for 5 requests, want once:\n%s", n, srv.Logs.String())
	}
	if st := storeAfterStop(t, srv, env["WXLOGIN_DB"]); len(st["scenes"]) != 0 {
		t.Errorf("%d scenes stored without a QR code", len(st["scenes"]))
	}
}

// --- 5: secrets and headers ---------------------------------------------------

var standInTokenRE = regexp.MustCompile(`standin-[A-Za-z0-9_-]{24}`)

// TestSecretsNeverLogged runs a production-mode server (WeChat's API is the
// stand-in) through a login, failures and refusals, and then looks for every
// secret in its logs and error answers.
func TestSecretsNeverLogged(t *testing.T) {
	standIn := weChat // the test binary's WeChat (main_test.go)
	t.Cleanup(func() { standIn.SetFault(wechattest.Fault{}) })
	const appSecret = "APPSECRET-must-never-be-logged-7f3a9c"
	const cbToken = "CALLBACKTOKEN-never-logged-91be"
	env := map[string]string{
		"WECHAT_APPID": "wxsecrettest000001", "WECHAT_APPSECRET": appSecret,
		"WECHAT_TOKEN": cbToken, "WECHAT_AES_KEY": testAESKey,
	}
	srv := startTestServer(t, env)
	sim := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: cbToken, AppID: "wxsecrettest000001", AESKey: testAESKey}
	var secrets []string
	var answers []string
	call := func(method, path, bearer string, body any, out any) *http.Response {
		resp := apiCall(t, method, srv.URL+path, bearer, body, out)
		if resp.StatusCode >= 400 { // error answers only: the others carry secrets by design
			b, _ := io.ReadAll(resp.Body)
			answers = append(answers, string(b))
		}
		return resp
	}

	sc := createScene(t, srv.URL)
	secrets = append(secrets, sc.Secret)
	if r, err := sim.Send(t.Context(), wechat.ScanEvent(sc.SceneID, "oSECRET_0000000000000000000001", false, time.Now())); err != nil || r.Status != http.StatusOK {
		t.Fatalf("scan: %v %d", err, r.Status)
	}
	var v secView
	call(http.MethodGet, "/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v)
	secrets = append(secrets, v.Code)
	call(http.MethodPost, "/api/v1/login/token", "wrong-secret", map[string]string{"scene_id": sc.SceneID, "code": v.Code}, nil)
	var tok secToken
	call(http.MethodPost, "/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok)
	call(http.MethodPost, "/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, nil) // reused code
	secrets = append(secrets, tok.AccessToken)
	call(http.MethodGet, "/api/v1/me", tok.AccessToken, nil, nil)
	call(http.MethodPost, "/api/v1/logout", tok.AccessToken, nil, nil)
	call(http.MethodGet, "/api/v1/me", tok.AccessToken, nil, nil)
	// Forged and stale callbacks.
	stale, _ := sim.Request(t.Context(), wechat.ScanEvent(sc.SceneID, "oX", false, time.Now()), time.Now().Add(-time.Hour))
	sim.Do(stale)
	// WeChat failing in the ways that put URLs (with access_token=) into errors.
	for _, f := range []wechattest.Fault{{HTTPStatus: http.StatusBadGateway}, {QRErrCode: 40013, QRErrMsg: "invalid appid"},
		{QRErrCode: wechat.ErrCodeQuota, QRErrMsg: "quota"}, {RejectTokens: true}} {
		standIn.SetFault(f)
		call(http.MethodPost, "/api/v1/login/scenes", "", nil, nil)
	}
	standIn.SetFault(wechattest.Fault{})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv.done <- nil

	logs := srv.Logs.String()
	if !strings.Contains(logs, "REDACTED") {
		t.Errorf("no scrubbed WeChat error in the logs: the failures above did not exercise Scrub:\n%s", logs)
	}
	for _, where := range []struct{ name, text string }{{"logs", logs}, {"answers", strings.Join(answers, "\n")}} {
		for _, s := range append(secrets, appSecret, cbToken, testAESKey) {
			if s != "" && strings.Contains(where.text, s) {
				t.Errorf("%s contain the secret %q", where.name, s)
			}
		}
		if m := standInTokenRE.FindString(where.text); m != "" {
			t.Errorf("%s contain an access token %q", where.name, m)
		}
		for _, m := range regexp.MustCompile(`access_token=[^&\s"]*`).FindAllString(where.text, -1) {
			if m != "access_token=REDACTED" {
				t.Errorf("%s contain %q", where.name, m)
			}
		}
	}
}

// TestSecurityHeaders: the page may not be framed and runs only our own
// scripts; every answer says nosniff.
func TestSecurityHeaders(t *testing.T) {
	srv := startTestServer(t, nil)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("page CSP allows inline code: %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q", resp.Header.Get("X-Frame-Options"))
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/login/scenes"},
		{http.MethodGet, "/api/v1/login/scenes/nope"},
		{http.MethodGet, "/api/v1/me"},
		{http.MethodPost, "/wechat/callback"},
		{http.MethodGet, "/"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q", tc.method, tc.path, resp.Header.Get("X-Content-Type-Options"))
		}
	}
}

// TestAESKeyValidated: a WECHAT_AES_KEY that cannot be an EncodingAESKey
// stops the start (it would refuse every safe-mode message) and names itself.
func TestAESKeyValidated(t *testing.T) {
	for key, ok := range map[string]bool{
		testAESKey:              true,
		strings.Repeat("!", 43): false, // 43 characters, not base64
		testAESKey[:42]:         false,
		testAESKey + "A":        false,
		testAESKey[:42] + "=":   false,
	} {
		env := map[string]string{"WECHAT_AES_KEY": key, "WXLOGIN_ADDR": "127.0.0.1:0"}
		_, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "WECHAT_AES_KEY")) {
			t.Errorf("WECHAT_AES_KEY=%q: %v", key, err)
		}
	}
}

// inBothModes runs test as the subtests "plain" and "aes" (WeChat's safe
// mode), each with a database of its own; env is the server's environment.
func inBothModes(t *testing.T, test func(t *testing.T, aes string, env map[string]string)) {
	for _, aes := range []string{"", testAESKey} {
		name := "plain"
		if aes != "" {
			name = "aes"
		}
		t.Run(name, func(t *testing.T) {
			test(t, aes, map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db"), "WECHAT_AES_KEY": aes})
		})
	}
}
