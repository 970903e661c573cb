package main

// Issue 13, item 1: a signed callback query cannot carry a body of someone
// else's choosing. WeChat's plain-mode signature covers the token, timestamp
// and nonce only; whoever has seen a callback URL could post it again with a
// SCAN of their own scene and the victim's openid. In plain mode the query is
// bound to its first body (across instances on Redis); with an AES key only
// encrypted, msg_signature-checked callbacks are taken.

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

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

// signedCallbackQuery is a query signed with the test servers' token.
func signedCallbackQuery(ts int64, nonce string) url.Values {
	q := url.Values{}
	t := strconv.FormatInt(ts, 10)
	q.Set("timestamp", t)
	q.Set("nonce", nonce)
	q.Set("signature", util.Signature(testToken, t, nonce))
	return q
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
