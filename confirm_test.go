package main

// Confirm mode (WXLOGIN_CONFIRM=link) end to end: a scan only marks the scene
// scanned, WeChat's reply carries a signed link, and only a POST from the
// confirm page decides. Every refused attempt is shown to change nothing.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/wechat"
)

func TestConfirmModeConfirm(t *testing.T) {
	env := confirmEnv(t)
	srv := startTestServer(t, env)
	sim := secSimulator(srv, "")
	const alice, mallory = "oCONFIRM_alice_00000000000001", "oCONFIRM_mallory_000000000001"

	// The attacker's browser (behind a trusted proxy) asks for the scene.
	sc := createSceneFrom(t, srv.URL, "203.0.113.7", "Mozilla/5.0 (QRLJacker) <b>bold</b>")
	stream, _ := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("first event %q", ev.Event)
	}

	scan := wechat.ScanEvent(sc.SceneID, alice, false, time.Now())
	link, text := scanForLink(t, sim, scan)
	if _, again := scanForLink(t, sim, scan); again != text {
		t.Fatalf("a retried scan got another reply:\n%q\n%q", text, again)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "scanned" || strings.Contains(ev.Data, `"code"`) {
		t.Fatalf("after the scan: %+v", ev)
	}
	// Someone else scanning the same QR gets no link and changes nothing.
	r, err := sim.Send(t.Context(), wechat.ScanEvent(sc.SceneID, mallory, false, time.Now()))
	if err != nil || r.Status != http.StatusOK || strings.Contains(r.Text, "/confirm") || !strings.Contains(r.Text, "already used") {
		t.Fatalf("second scanner: %v %d %q", err, r.Status, r.Text)
	}

	exp, err := time.Parse(time.RFC3339Nano, sc.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	created := exp.Add(-time.Duration(sc.ExpiresIn) * time.Second).UTC().Format(time.RFC3339)
	// The page shows where the request came from; fetching it (a link
	// preview, a prefetch) decides nothing.
	for range 2 {
		status, h, body := confirmPageAt(t, srv.URL, link, nil)
		if status != http.StatusOK {
			t.Fatalf("GET confirm page: %d %s", status, body)
		}
		for _, want := range []string{"203.0.113.7", "Mozilla/5.0 (QRLJacker) &lt;b&gt;bold&lt;/b&gt;", `method="post"`, "北京时间", created} {
			if !strings.Contains(body, want) {
				t.Errorf("confirm page lacks %q", want)
			}
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("confirm page CSP %q", csp)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("confirm page Cache-Control %q", h.Get("Cache-Control"))
		}
	}

	// Refused attempts.
	signer, err := login.NewLinkSigner([]byte(testLinkKey))
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	token := strings.TrimPrefix(link, "/confirm?t=")
	parts := strings.Split(token, ".")
	refused := []struct {
		name   string
		path   string
		form   url.Values
		status int
	}{
		{"decision in the query only", link + "&decision=confirm", url.Values{}, http.StatusBadRequest},
		{"unknown decision", link, decision("yes"), http.StatusBadRequest},
		{"link signed for another openid", "/confirm?t=" + signer.Token(sc.SceneID, mallory, later), decision("confirm"), http.StatusForbidden},
		{"link signed with another key", "/confirm?t=" + otherSigner(t).Token(sc.SceneID, alice, later), decision("confirm"), http.StatusForbidden},
		{"expiry stretched", "/confirm?t=" + parts[0] + ".4102444800." + parts[2], decision("confirm"), http.StatusForbidden},
		{"expired link", "/confirm?t=" + signer.Token(sc.SceneID, alice, time.Now().Add(-time.Second)), decision("confirm"), http.StatusGone},
		{"junk token", "/confirm?t=not-a-token", decision("confirm"), http.StatusNotFound},
		{"no token", "/confirm", decision("confirm"), http.StatusNotFound},
	}
	for _, tt := range refused {
		status, _, body := confirmPageAt(t, srv.URL, tt.path, tt.form)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, status, tt.status, body)
		}
	}
	// A body over the limit is 413 in the API's JSON shape.
	big := url.Values{"decision": {"confirm"}, "pad": {strings.Repeat("x", 5<<10)}}
	if status, _, body := confirmPageAt(t, srv.URL, link, big); status != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"error":"too_large"`) {
		t.Errorf("oversized form: %d %s", status, body)
	}

	// Nothing above changed the scene: the next event is the real decision.
	status, _, body := confirmPageAt(t, srv.URL, link, decision("confirm"))
	if status != http.StatusOK || !strings.Contains(body, "这是你第 1 次登录") {
		t.Fatalf("confirm: %d %s", status, body)
	}
	ev := stream.Next(t, 5*time.Second)
	if ev.Event != "confirmed" || !strings.Contains(ev.Data, `"code"`) {
		t.Fatalf("after confirm: %+v", ev)
	}
	stream.WaitClosed(t, 5*time.Second)

	// The link works once.
	for _, d := range []string{"confirm", "deny"} {
		if status, _, body := confirmPageAt(t, srv.URL, link, decision(d)); status != http.StatusConflict || !strings.Contains(body, "already used") {
			t.Errorf("reused link (%s): %d %s", d, status, body)
		}
	}
	if status, _, _ := confirmPageAt(t, srv.URL, link, nil); status != http.StatusConflict {
		t.Errorf("GET after the decision: %d", status)
	}

	var v secView
	apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v)
	var tok secToken
	resp := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret,
		map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok)
	if resp.StatusCode != http.StatusOK || tok.User.LoginCount != 1 {
		t.Fatalf("exchange: %d %+v", resp.StatusCode, tok)
	}

	st := storeAfterStop(t, srv, env["WXLOGIN_DB"])
	// The link is a bearer capability: it must not reach the logs.
	if logs := srv.Logs.String(); strings.Contains(logs, parts[2]) {
		t.Errorf("the confirm link's signature is in the logs:\n%s", logs)
	}
	if u := st.user(t, alice); u == nil || u.LoginCount != 1 {
		t.Fatalf("alice in storage: %+v", u)
	}
	if u := st.user(t, mallory); u != nil {
		t.Fatalf("mallory was counted: %+v", u)
	}
	if s := st.scene(t, sc.SceneID); s.Status != login.StatusConsumed || s.OpenID != alice {
		t.Fatalf("scene in storage: %+v", s)
	}
}

func TestConfirmModeDeny(t *testing.T) {
	env := confirmEnv(t)
	srv := startTestServer(t, env)
	sim := secSimulator(srv, "")
	const alice = "oCONFIRM_alice_00000000000002"

	sc := createSceneFrom(t, srv.URL, "198.51.100.9", "TestBrowser/1.0")
	stream, _ := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	stream.Next(t, 5*time.Second) // pending

	// A long-poll waiting through the scan shows "scanned".
	polled := longPollAsync(t, srv.URL, sc, 10)
	time.Sleep(200 * time.Millisecond) // let the long-poll register; a late one still sees "scanned"
	link, _ := scanForLink(t, sim, wechat.ScanEvent(sc.SceneID, alice, true, time.Now()))
	if v := <-polled; v.Status != "scanned" || v.Code != "" {
		t.Fatalf("long-poll through the scan: %+v", v)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "scanned" {
		t.Fatalf("stream after the scan: %+v", ev)
	}

	time.Sleep(2 * time.Second) // the poll interval counts from the end of the last poll
	polled = longPollAsync(t, srv.URL, sc, 10)
	time.Sleep(200 * time.Millisecond)
	status, _, body := confirmPageAt(t, srv.URL, link, decision("deny"))
	if status != http.StatusOK || !strings.Contains(body, "denied") {
		t.Fatalf("deny: %d %s", status, body)
	}
	if v := <-polled; v.Status != "denied" || v.Code != "" {
		t.Fatalf("long-poll through the denial: %+v", v)
	}
	ev := stream.Next(t, 5*time.Second)
	if ev.Event != "denied" || strings.Contains(ev.Data, `"code"`) {
		t.Fatalf("stream after the denial: %+v", ev)
	}
	stream.WaitClosed(t, 5*time.Second)
	// A reconnect holding the terminal event is told to stop.
	if _, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, ev.ID); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reconnect after denied: %d", resp.StatusCode)
	}
	if status, _, _ := confirmPageAt(t, srv.URL, link, decision("confirm")); status != http.StatusConflict {
		t.Fatalf("confirm after deny: %d", status)
	}
	resp := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret,
		map[string]string{"scene_id": sc.SceneID, "code": login.CodeFor(sc.Secret, sc.SceneID)}, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("exchange after deny: %d", resp.StatusCode)
	}

	st := storeAfterStop(t, srv, env["WXLOGIN_DB"])
	if u := st.user(t, alice); u != nil && u.LoginCount != 0 {
		t.Fatalf("a denied login was counted: %+v", u)
	}
	if s := st.scene(t, sc.SceneID); s.Status != login.StatusDenied {
		t.Fatalf("scene in storage: %+v", s)
	}
}

// TestConfirmLinkKeyDerived: without WXLOGIN_LINK_KEY the key is derived from
// the WeChat secrets, so two instances with the same configuration accept
// each other's links (and a restarted instance its own).
func TestConfirmLinkKeyDerived(t *testing.T) {
	env := confirmEnv(t)
	delete(env, "WXLOGIN_LINK_KEY")
	srv := startTestServer(t, env)
	const alice = "oCONFIRM_alice_00000000000003"
	sc := createSceneFrom(t, srv.URL, "192.0.2.1", "UA")
	link, _ := scanForLink(t, secSimulator(srv, ""), wechat.ScanEvent(sc.SceneID, alice, false, time.Now()))

	// The same instance restarted (same configuration, same database).
	storeAfterStop(t, srv, env["WXLOGIN_DB"])
	again := startTestServer(t, env)
	if status, _, body := confirmPageAt(t, again.URL, link, decision("confirm")); status != http.StatusOK {
		t.Fatalf("link after restart: %d %s", status, body)
	}
	// Another token makes another key: the link no longer verifies.
	storeAfterStop(t, again, env["WXLOGIN_DB"])
	env["WECHAT_TOKEN"] = "another-callback-token"
	other := startTestServer(t, env)
	if status, _, _ := confirmPageAt(t, other.URL, link, nil); status != http.StatusForbidden {
		t.Fatalf("link under another derived key: %d", status)
	}
}

func otherSigner(t *testing.T) *login.LinkSigner {
	s, err := login.NewLinkSigner([]byte(strings.Repeat("z", 40)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplyTemplateReachesBothAnswers: WXLOGIN_REPLY_TEMPLATE words a login
// both in WeChat's reply to a scan and on the confirm page.
func TestReplyTemplateReachesBothAnswers(t *testing.T) {
	const template = "Welcome back {name}, login #{count}"
	for _, mode := range []string{"auto", "link"} {
		t.Run(mode, func(t *testing.T) {
			env := confirmEnv(t)
			env["WXLOGIN_CONFIRM"] = mode
			env["WXLOGIN_REPLY_TEMPLATE"] = template
			srv := startTestServer(t, env)
			sim := secSimulator(srv, "")
			sc := createSceneFrom(t, srv.URL, "198.51.100.10", "TestBrowser/1.0")
			ev := wechat.ScanEvent(sc.SceneID, "oTEMPLATE_000000000000000001", true, time.Now())
			want := "Welcome back " + login.DefaultUserName + ", login #1"
			if mode == "auto" {
				r, err := sim.Send(t.Context(), ev)
				if err != nil || r.Status != http.StatusOK || r.Text != want {
					t.Fatalf("scan reply: %v %d %q, want %q", err, r.Status, r.Text, want)
				}
				return
			}
			link, _ := scanForLink(t, sim, ev)
			if status, _, body := confirmPageAt(t, srv.URL, link, decision("confirm")); status != http.StatusOK || !strings.Contains(body, want) {
				t.Fatalf("confirm page: %d %s", status, body)
			}
		})
	}
}
