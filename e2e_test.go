package main

// The login flow end to end over real HTTP against the service started
// through run: scene, SSE stream, polling, WeChat's callback, the code
// exchange, the session, and what is refused. Helpers live in the
// *_helpers_test.go files.

import (
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"wxlogin/wechat"
)

// TestLoginEndToEnd drives the whole flow over real HTTP: scene, SSE stream,
// signed callback, code exchange, /me — and WeChat repeating a callback.
func TestLoginEndToEnd(t *testing.T) {
	srv := startTestServer(t, nil)
	sim := simulatorFor(srv)
	const openID = "oE2E_user_000000000000000001"

	var lastEvent wechat.Event
	for i, want := range []int64{1, 2} {
		sc := createScene(t, srv.URL)
		if sc.Status != "pending" || sc.ExpiresIn != 120 || sc.Interval != 2 || !strings.HasPrefix(sc.QRURL, "http://weixin.qq.com/q/") {
			t.Fatalf("create answer: %+v", sc)
		}
		if got, ok := wechat.SceneOfQR(sc.QRURL); !ok || got != sc.SceneID {
			t.Fatalf("QR encodes scene %q, want %q", got, sc.SceneID)
		}
		stream, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
		if stream == nil {
			t.Fatalf("open stream: status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("stream content type %q", ct)
		}
		first := stream.Next(t, 5*time.Second)
		if first.Event != "pending" || first.ID != "1" || first.Retry == "" {
			t.Fatalf("first event: %+v", first)
		}

		lastEvent = wechat.ScanEvent(sc.SceneID, openID, i == 0, time.Now())
		reply, err := sim.Send(context.Background(), lastEvent)
		if err != nil || reply.Status != http.StatusOK {
			t.Fatalf("callback: %+v, %v", reply, err)
		}
		wantText := "微信用户, 登录成功! 这是你第 " + itoa(want) + " 次登录, 玩得开心!"
		if reply.Text != wantText {
			t.Fatalf("reply %q, want %q", reply.Text, wantText)
		}

		ev := stream.Next(t, 5*time.Second)
		var v viewBody
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
			t.Fatal(err)
		}
		if ev.Event != "confirmed" || ev.ID != "2" || v.Status != "confirmed" || v.Code == "" || v.User == nil || v.User.LoginCount != want {
			t.Fatalf("confirmed event: %+v", ev)
		}
		stream.WaitClosed(t, 5*time.Second)

		// The poll endpoint shows exactly the stream's data.
		var polled viewBody
		pr := apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &polled)
		body, _ := readAll(pr)
		if pr.StatusCode != 200 || strings.TrimSpace(body) != ev.Data {
			t.Fatalf("poll %d %s\nstream %s", pr.StatusCode, body, ev.Data)
		}

		var tok tokenBody
		tr := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &tok)
		if tr.StatusCode != 200 || tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.User.LoginCount != want {
			t.Fatalf("exchange: %d %+v", tr.StatusCode, tok)
		}
		if strings.Contains(tok.User.ID, openID) || tok.User.ID == "" {
			t.Fatalf("user id %q must be opaque", tok.User.ID)
		}
		var again errorBody
		if r := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": v.Code}, &again); r.StatusCode != http.StatusConflict || again.Error != "conflict" {
			t.Fatalf("second exchange: %d %+v", r.StatusCode, again)
		}
		var me userBody
		if r := apiCall(t, http.MethodGet, srv.URL+"/api/v1/me", tok.AccessToken, nil, &me); r.StatusCode != 200 || me.LoginCount != want || me.Name != "微信用户" {
			t.Fatalf("/me: %d %+v", r.StatusCode, me)
		}
		// A consumed scene's stream answers 204: EventSource stops.
		if s, r := openStream(t, srv.URL, sc.SceneID, sc.Secret, ""); s != nil || r.StatusCode != http.StatusNoContent {
			t.Fatalf("stream of consumed scene: %d", r.StatusCode)
		}
	}

	// WeChat repeats the last callback (it did not see our answer): same
	// reply, no second count.
	reply, err := sim.Send(context.Background(), lastEvent)
	if err != nil || !strings.Contains(reply.Text, "第 2 次登录") {
		t.Fatalf("repeated callback: %+v %v", reply, err)
	}
	sc := createScene(t, srv.URL)
	if _, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, openID, false, time.Now())); err != nil {
		t.Fatal(err)
	}
	var v viewBody
	apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v)
	if v.User == nil || v.User.LoginCount != 3 {
		t.Fatalf("after a repeated callback the next login must be the 3rd: %+v", v)
	}
}

// TestRefusals: what must be refused is refused, and changes nothing.
func TestRefusals(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	base := srv.URL + "/api/v1/login/scenes/"

	cases := []struct {
		name, method, url, bearer string
		status                    int
		code                      string
	}{
		{"poll without secret", "GET", base + sc.SceneID, "", 401, "unauthorized"},
		{"poll with wrong secret", "GET", base + sc.SceneID, "wrong", 401, "unauthorized"},
		{"stream without secret", "GET", base + sc.SceneID + "/events", "", 401, "unauthorized"},
		{"stream with wrong secret", "GET", base + sc.SceneID + "/events", sc.Secret + "x", 401, "unauthorized"},
		{"unknown scene", "GET", base + "AAAAAAAAAAAAAAAAAAAAAA", sc.Secret, 404, "not_found"},
		{"junk scene id", "GET", base + "..%2F..", sc.Secret, 404, "not_found"},
		{"wait too long", "GET", base + sc.SceneID + "?wait=31", sc.Secret, 400, "invalid"},
		{"me without token", "GET", srv.URL + "/api/v1/me", "", 401, "unauthorized"},
		{"me with junk token", "GET", srv.URL + "/api/v1/me", "junk", 401, "unauthorized"},
		{"no such route", "GET", srv.URL + "/api/v1/nope", "", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e errorBody
			r := apiCall(t, c.method, c.url, c.bearer, nil, &e)
			if r.StatusCode != c.status || e.Error != c.code || e.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", r.StatusCode, e, c.status, c.code)
			}
			if strings.Contains(e.Message, sc.Secret) {
				t.Fatal("error message leaks the secret")
			}
		})
	}

	// A bad signature is 403 and confirms nothing.
	sim := simulatorFor(srv)
	sim.Token = "not-the-token"
	reply, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oAttacker", false, time.Now()))
	if err != nil || reply.Status != http.StatusForbidden {
		t.Fatalf("bad signature: %+v %v", reply, err)
	}
	// A missing signature too.
	r := apiCall(t, "POST", srv.URL+"/wechat/callback", "", nil, nil)
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned callback: %d", r.StatusCode)
	}
	var v viewBody
	apiCall(t, "GET", base+sc.SceneID, sc.Secret, nil, &v)
	if v.Status != "pending" {
		t.Fatalf("scene changed by refused callbacks: %+v", v)
	}

	// A wrong code is refused and the scene stays exchangeable.
	good := simulatorFor(srv)
	if _, err := good.Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oRefusal", false, time.Now())); err != nil {
		t.Fatal(err)
	}
	var e errorBody
	if r := apiCall(t, "POST", srv.URL+"/api/v1/login/token", sc.Secret, map[string]string{"scene_id": sc.SceneID, "code": "nope"}, &e); r.StatusCode != 400 {
		t.Fatalf("wrong code: %d %+v", r.StatusCode, e)
	}
	if r := apiCall(t, "POST", srv.URL+"/api/v1/login/token", "", map[string]string{"scene_id": sc.SceneID, "code": "nope"}, &e); r.StatusCode != 401 {
		t.Fatalf("exchange without secret: %d %+v", r.StatusCode, e)
	}
}

// TestCallbackURLVerification: WeChat's GET echo.
func TestCallbackURLVerification(t *testing.T) {
	srv := startTestServer(t, nil)
	sim := simulatorFor(srv)
	req, err := sim.Request(context.Background(), wechat.Event{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	q := req.URL.Query()
	q.Set("echostr", "hello-echo")
	q.Del("openid")
	resp, err := http.Get(srv.URL + "/wechat/callback?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := readAll(resp)
	if resp.StatusCode != 200 || body != "hello-echo" {
		t.Fatalf("echo: %d %q", resp.StatusCode, body)
	}
	q.Set("signature", strings.Repeat("0", 40))
	resp, _ = http.Get(srv.URL + "/wechat/callback?" + q.Encode())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("echo with bad signature: %d", resp.StatusCode)
	}
}

// TestPollingAndLongPoll: the poll endpoint, slow_down, and ?wait.
func TestPollingAndLongPoll(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	url := srv.URL + "/api/v1/login/scenes/" + sc.SceneID

	var v viewBody
	if r := apiCall(t, "GET", url, sc.Secret, nil, &v); r.StatusCode != 200 || v.Status != "pending" || v.Code != "" {
		t.Fatalf("poll: %d %+v", r.StatusCode, v)
	}
	var e errorBody
	r := apiCall(t, "GET", url, sc.Secret, nil, &e)
	if r.StatusCode != http.StatusTooManyRequests || e.Error != "slow_down" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("fast poll: %d %+v retry-after=%q", r.StatusCode, e, r.Header.Get("Retry-After"))
	}

	time.Sleep(2 * time.Second)
	done := make(chan viewBody, 1)
	start := time.Now()
	go func() {
		var lv viewBody
		apiCall(t, "GET", url+"?wait=20", sc.Secret, nil, &lv)
		done <- lv
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := simulatorFor(srv).Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oLongPoll", false, time.Now())); err != nil {
		t.Fatal(err)
	}
	select {
	case lv := <-done:
		if lv.Status != "confirmed" || lv.Code == "" {
			t.Fatalf("long-poll answer: %+v", lv)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("long-poll answered only at its timeout")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not answer")
	}
}

// TestStreamReconnect: a client that lost the final event gets it again;
// one that has it gets 204.
func TestStreamReconnect(t *testing.T) {
	srv := startTestServer(t, nil)
	sc := createScene(t, srv.URL)
	if _, err := simulatorFor(srv).Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oReconnect", false, time.Now())); err != nil {
		t.Fatal(err)
	}
	s, r := openStream(t, srv.URL, sc.SceneID, sc.Secret, "1")
	if s == nil {
		t.Fatalf("reconnect with an old id: %d", r.StatusCode)
	}
	ev := s.Next(t, 5*time.Second)
	if ev.Event != "confirmed" || ev.ID != "2" || !strings.Contains(ev.Data, `"code":`) {
		t.Fatalf("reconnect event: %+v", ev)
	}
	s.WaitClosed(t, 5*time.Second)
	if s, r := openStream(t, srv.URL, sc.SceneID, sc.Secret, "2"); s != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("reconnect with the final id: %d, want 204", r.StatusCode)
	}
	// An unknown scene: 204 so EventSource stops.
	if s, r := openStream(t, srv.URL, "AAAAAAAAAAAAAAAAAAAAAA", sc.Secret, ""); s != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("unknown scene stream: %d", r.StatusCode)
	}
}

// TestExpiry: a scene left alone expires; its stream says so and ends.
func TestExpiry(t *testing.T) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_QR_TTL": "2s", "WXLOGIN_SWEEP_INTERVAL": "200ms"})
	sc := createScene(t, srv.URL)
	s, _ := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	if ev := s.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("first: %+v", ev)
	}
	ev := s.Next(t, 10*time.Second)
	if ev.Event != "expired" || ev.ID != "2" {
		t.Fatalf("expiry event: %+v", ev)
	}
	s.WaitClosed(t, 5*time.Second)
	reply, err := simulatorFor(srv).Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oLate", false, time.Now()))
	if err != nil || !strings.Contains(reply.Text, "过期") {
		t.Fatalf("late scan reply: %+v %v", reply, err)
	}
	if r := apiCall(t, "GET", srv.URL+sc.QRImage, "", nil, nil); r.StatusCode != 404 {
		t.Fatalf("QR of an expired scene: %d", r.StatusCode)
	}
}

// TestQRImageAndCookie: the PNG decodes, and the cookie authorises the stream.
func TestQRImageAndCookie(t *testing.T) {
	srv := startTestServer(t, nil)
	resp, err := http.Post(srv.URL+"/api/v1/login/scenes", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var sc sceneInfo
	if err := json.NewDecoder(resp.Body).Decode(&sc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "wxl_"+sc.SceneID {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/api/v1/login" || cookie.Value != sc.Secret || cookie.MaxAge != 420 {
		t.Fatalf("cookie: %+v", cookie)
	}

	img, err := http.Get(srv.URL + sc.QRImage)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Body.Close()
	if img.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("qr content type %q", img.Header.Get("Content-Type"))
	}
	if _, err := png.Decode(img.Body); err != nil {
		t.Fatalf("qr.png: %v", err)
	}

	req, _ := http.NewRequest("GET", srv.URL+sc.StatusURL, nil)
	req.AddCookie(cookie)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("poll with cookie: %d", r.StatusCode)
	}
}

// TestCountsSurviveRestart: counts are on disk.
func TestCountsSurviveRestart(t *testing.T) {
	db := t.TempDir() + "/restart.db"
	for want := int64(1); want <= 2; want++ {
		srv := startTestServer(t, map[string]string{"WXLOGIN_DB": db})
		sc := createScene(t, srv.URL)
		reply, err := simulatorFor(srv).Send(context.Background(), wechat.ScanEvent(sc.SceneID, "oRestart", false, time.Now()))
		if err != nil || !strings.Contains(reply.Text, "第 "+itoa(want)+" 次") {
			t.Fatalf("login %d: %+v %v", want, reply, err)
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecondProcessFailsFast: the database file is locked.
func TestSecondProcessFailsFast(t *testing.T) {
	db := t.TempDir() + "/locked.db"
	startTestServer(t, map[string]string{"WXLOGIN_DB": db})
	start := time.Now()
	err := run(context.Background(), nil, func(k string) string {
		return map[string]string{"WXLOGIN_ADDR": "127.0.0.1:0", "WXLOGIN_DB": db}[k]
	}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second process: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s to fail", time.Since(start))
	}
}

// TestConfigErrorsNameTheVariable: a bad value stops the start.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"WXLOGIN_QR_TTL":          {"WXLOGIN_QR_TTL": "soon"},
		"WXLOGIN_SCENE_RATE":      {"WXLOGIN_SCENE_RATE": "-1"},
		"WXLOGIN_ADDR":            {"WXLOGIN_ADDR": "0.0.0.0:0"}, // demo mode beyond loopback
		"WECHAT_APPSECRET":        {"WECHAT_APPID": "wx123"},
		"WXLOGIN_CONFIRM":         {"WXLOGIN_CONFIRM": "maybe"},
		"WXLOGIN_LOG_FORMAT":      {"WXLOGIN_LOG_FORMAT": "xml"},
		"WXLOGIN_PUBLIC_URL":      {"WXLOGIN_PUBLIC_URL": "example.com"},
		"WXLOGIN_TRUSTED_PROXIES": {"WXLOGIN_TRUSTED_PROXIES": "10.0.0.0/99"},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			env["WXLOGIN_DB"] = t.TempDir() + "/x.db"
			if _, ok := env["WXLOGIN_ADDR"]; !ok {
				env["WXLOGIN_ADDR"] = "127.0.0.1:0"
			}
			err := run(context.Background(), nil, func(k string) string { return env[k] }, &syncBuffer{})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("got %v, want an error naming %s", err, name)
			}
		})
	}
	// WXLOGIN_DEMO=1 lets the demo listen beyond loopback.
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADDR": "0.0.0.0:0", "WXLOGIN_DEMO": "1"})
	if srv.URL == "" {
		t.Fatal("no URL")
	}
}
