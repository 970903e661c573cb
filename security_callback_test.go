package main

// Attacks through WeChat's callback, against the real server started by run:
// forged, stale, tampered and replayed messages are refused and, where they
// could write, storage holds exactly what it held before (the server is
// stopped, the bbolt file is read record by record, and the two readings are
// compared). A handled message's key is kept for a day, so retries are
// answered once.
//
// A signed callback query cannot carry a body of someone else's choosing.
// WeChat's plain-mode signature covers the token, timestamp and nonce only;
// whoever has seen a callback URL could post it again with a SCAN of their own scene and the victim's openid. In plain mode the query is
// bound to its first body (across instances on Redis); with an AES key only
// encrypted, msg_signature-checked callbacks are taken.

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"wxlogin/events"
	"wxlogin/login"
	"wxlogin/storage"
	"wxlogin/wechat"
)

// callbackPair is two ways into one service: on Redis two instances, on
// bbolt (one process by design) the same instance twice.
type callbackPair struct{ a, b *testServer }

// startCallbackPair starts the service on store ("bbolt" or "redis") with
// WECHAT_AES_KEY=aes.
func startCallbackPair(t *testing.T, store, aes string) callbackPair {
	t.Helper()
	env := map[string]string{"WECHAT_AES_KEY": aes, "WXLOGIN_SCENE_RATE": "0"}
	if store == "bbolt" {
		srv := startTestServer(t, env)
		return callbackPair{srv, srv}
	}
	servers := startCluster(t, 2, clusterRedis, newClusterPrefix(t, clusterRedis), env)
	return callbackPair{servers[0], servers[1]}
}

func TestCallbackQueryBoundToBody(t *testing.T) {
	for _, store := range []string{"bbolt", "redis"} {
		for _, aes := range []string{"", testAESKey} {
			mode := "plain"
			if aes != "" {
				mode = "aes"
			}
			t.Run(store+"/"+mode, func(t *testing.T) {
				callbackBoundToBody(t, startCallbackPair(t, store, aes), aes)
			})
		}
	}
}

func callbackBoundToBody(t *testing.T, p callbackPair, aes string) {
	simA, simB := secSimulator(p.a, aes), secSimulator(p.b, aes)
	victim := wechat.RandomOpenID()
	now := time.Now()

	// The victim logs in; WeChat's URL is seen by the attacker (a proxy log).
	victimScene := createScene(t, p.a.URL)
	genuine := capture(t, simA, wechat.ScanEvent(victimScene.SceneID, victim, false, now), now)
	status, body := sendRaw(t, p.a.URL, genuine.q, genuine.body)
	first := replyText(t, simA, status, body)
	if replyCount(t, first) != 1 {
		t.Fatalf("genuine scan: %q", first)
	}
	// WeChat's retry (same query, same body), to the other instance: the
	// same answer, nothing counted twice.
	status, body = sendRaw(t, p.b.URL, genuine.q, genuine.body)
	if again := replyText(t, simB, status, body); again != first {
		t.Fatalf("retry answered %q, want %q", again, first)
	}

	// The attacker's own scene, and a plaintext SCAN of it in the victim's name.
	attackerScene := createScene(t, p.b.URL)
	plainSim := secSimulator(p.b, "")
	forged := capture(t, plainSim, wechat.ScanEvent(attackerScene.SceneID, victim, false, now), now).body

	attacks := []struct {
		name string
		q    url.Values
		body []byte
	}{
		{"seen query, another body", genuine.q, forged},
		{"seen query, another body, to the instance that answered", genuine.q, forged},
	}
	if aes != "" {
		plainQ := url.Values{}
		for _, k := range []string{"timestamp", "nonce", "signature", "openid"} {
			plainQ.Set(k, genuine.q.Get(k))
		}
		attacks = append(attacks, struct {
			name string
			q    url.Values
			body []byte
		}{"seen query without encrypt_type, plaintext body", plainQ, forged})
	}
	for i, a := range attacks {
		target := p.b
		if i == 1 {
			target = p.a
		}
		if status, body := sendRaw(t, target.URL, a.q, a.body); status != http.StatusForbidden {
			t.Errorf("%s: %d %q, want 403", a.name, status, body)
		}
	}

	// Nothing changed: the attacker's scene still waits, and the victim's
	// next login is their second.
	if v := pollScene(t, p.a.URL, attackerScene); v.Status != "pending" {
		t.Fatalf("attacker's scene after the attacks: %+v", v)
	}
	next := createScene(t, p.b.URL)
	r, err := simB.Send(t.Context(), wechat.ScanEvent(next.SceneID, victim, false, time.Now()))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("victim's next login: %v %d %q", err, r.Status, r.Body)
	}
	if n := replyCount(t, r.Text); n != 2 {
		t.Fatalf("victim's next login is number %d, want 2 (an attack counted)", n)
	}
}

// TestSafeModeRefusesPlaintext: with WECHAT_AES_KEY set, a plaintext callback
// correctly signed (WeChat's console still in plain mode, or an attacker
// replaying a seen query) is 403 and confirms nothing; the URL check (GET)
// still answers, so the console can be switched.
func TestSafeModeRefusesPlaintext(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WECHAT_AES_KEY": testAESKey})
	sc := createScene(t, srv.URL)
	plain := secSimulator(srv, "")
	r, err := plain.Send(t.Context(), wechat.ScanEvent(sc.SceneID, wechat.RandomOpenID(), false, time.Now()))
	if err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("plaintext callback in safe mode: %v %d %q, want 403", err, r.Status, r.Body)
	}
	if v := pollScene(t, srv.URL, sc); v.Status != "pending" {
		t.Fatalf("scene after a plaintext callback: %+v", v)
	}
	ts := time.Now().Unix()
	q := signedCallbackQuery(ts, "echo1")
	q.Set("echostr", "hello")
	resp, err := http.Get(srv.URL + "/wechat/callback?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := readAll(resp)
	if resp.StatusCode != http.StatusOK || echo != "hello" {
		t.Fatalf("URL verification in safe mode: %d %q", resp.StatusCode, echo)
	}
}

// compatibleMode is the callback WeChat's compatible mode (兼容模式) sends
// for ev: the query of safe mode (encrypt_type=aes, msg_signature) and a body
// with the message both in plaintext and encrypted.
func compatibleMode(t *testing.T, srv *testServer, ev wechat.Event, at time.Time) captured {
	t.Helper()
	enc := capture(t, secSimulator(srv, testAESKey), ev, at)
	var env message.EncryptedXMLMsg
	if err := xml.Unmarshal(enc.body, &env); err != nil {
		t.Fatal(err)
	}
	plain := string(capture(t, secSimulator(srv, ""), ev, at).body)
	body := strings.Replace(plain, "</xml>", "<Encrypt><![CDATA["+env.EncryptedMsg+"]]></Encrypt></xml>", 1)
	return captured{q: enc.q, body: []byte(body)}
}

// TestSwitchToSafeModeLosesNoLogin follows README's order: the console goes
// to compatible mode while wxlogin has no key (the plaintext copy is taken),
// then wxlogin gets WECHAT_AES_KEY (the encrypted copy is taken, plaintext
// refused), then the console goes to safe mode. Every step logs in.
func TestSwitchToSafeModeLosesNoLogin(t *testing.T) {
	db := filepath.Join(t.TempDir(), "wxlogin.db")
	person := wechat.RandomOpenID()

	// 1. Console in compatible mode, wxlogin without a key.
	srv := startTestServer(t, map[string]string{"WXLOGIN_DB": db})
	sc := createScene(t, srv.URL)
	msg := compatibleMode(t, srv, wechat.ScanEvent(sc.SceneID, person, false, time.Now()), time.Now())
	status, body := sendRaw(t, srv.URL, msg.q, msg.body)
	if n := replyCount(t, replyText(t, secSimulator(srv, ""), status, body)); n != 1 {
		t.Fatalf("compatible mode without a key: login %d", n)
	}
	// Its plaintext copy is bound to the query like any plain message.
	forged := compatibleMode(t, srv, wechat.ScanEvent(createScene(t, srv.URL).SceneID, person, false, time.Now()), time.Now())
	if status, _ := sendRaw(t, srv.URL, msg.q, forged.body); status != http.StatusForbidden {
		t.Fatalf("compatible mode without a key, seen query with another body: %d", status)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// 2. wxlogin gets the key; the console is still in compatible mode.
	srv = startTestServer(t, map[string]string{"WXLOGIN_DB": db, "WECHAT_AES_KEY": testAESKey})
	sc = createScene(t, srv.URL)
	msg = compatibleMode(t, srv, wechat.ScanEvent(sc.SceneID, person, false, time.Now()), time.Now())
	status, body = sendRaw(t, srv.URL, msg.q, msg.body)
	if n := replyCount(t, replyText(t, secSimulator(srv, testAESKey), status, body)); n != 2 {
		t.Fatalf("compatible mode with the key: login %d", n)
	}

	// 3. The console in safe mode.
	sc = createScene(t, srv.URL)
	r, err := secSimulator(srv, testAESKey).Send(t.Context(), wechat.ScanEvent(sc.SceneID, person, false, time.Now()))
	if err != nil || r.Status != http.StatusOK || replyCount(t, r.Text) != 3 {
		t.Fatalf("safe mode: %v %d %q", err, r.Status, r.Text)
	}
}

// TestBindingsKeptOverRestart: on bbolt the bindings of a run are kept in
// the database at a graceful stop, so a restart within the freshness window
// does not let a seen query carry another body.
func TestBindingsKeptOverRestart(t *testing.T) {
	env := map[string]string{"WXLOGIN_DB": filepath.Join(t.TempDir(), "wxlogin.db")}
	srv := startTestServer(t, env)
	sim := secSimulator(srv, "")
	victim := wechat.RandomOpenID()
	now := time.Now()
	genuine := capture(t, sim, wechat.ScanEvent(createScene(t, srv.URL).SceneID, victim, false, now), now)
	status, body := sendRaw(t, srv.URL, genuine.q, genuine.body)
	first := replyText(t, sim, status, body)
	attackerScene := createScene(t, srv.URL)
	forged := capture(t, sim, wechat.ScanEvent(attackerScene.SceneID, victim, false, now), now).body
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	srv = startTestServer(t, env)
	if status, body := sendRaw(t, srv.URL, genuine.q, forged); status != http.StatusForbidden {
		t.Fatalf("seen query with another body after a restart: %d %q", status, body)
	}
	status, body = sendRaw(t, srv.URL, genuine.q, genuine.body)
	if again := replyText(t, secSimulator(srv, ""), status, body); again != first {
		t.Fatalf("WeChat's retry after the restart: %q, want %q", again, first)
	}
	if v := pollScene(t, srv.URL, attackerScene); v.Status != "pending" {
		t.Fatalf("attacker's scene: %+v", v)
	}
}

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
