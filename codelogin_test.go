package main

// Login by message code, end to end over real HTTP: the page's scene shows a
// code, the person sends it to the account (a signed WeChat text message
// from the simulator), and the waiting stream or long-poll learns the login.
// Every test runs on bbolt and on Redis, in plain and safe (AES) mode.

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
	"wxlogin/login"
	"wxlogin/wechat"
)

// codeSetups are the deployments every code-login test runs on.
func codeSetups(t *testing.T) []struct {
	name string
	env  map[string]string
	aes  string
} {
	const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	redisEnv := func() map[string]string {
		return map[string]string{"WXLOGIN_REDIS_URL": clusterRedis, "WXLOGIN_REDIS_PREFIX": newClusterPrefix(t, clusterRedis)}
	}
	return []struct {
		name string
		env  map[string]string
		aes  string
	}{
		{"bolt/plain", map[string]string{}, ""},
		{"bolt/aes", map[string]string{"WECHAT_AES_KEY": aesKey}, aesKey},
		{"redis/plain", redisEnv(), ""},
		{"redis/aes", with(redisEnv(), "WECHAT_AES_KEY", aesKey), aesKey},
	}
}

func TestCodeLoginEndToEnd(t *testing.T) {
	for _, setup := range codeSetups(t) {
		t.Run(setup.name, func(t *testing.T) {
			srv := startTestServer(t, setup.env)
			sim := codeSimulator(srv, setup.aes)
			const openID = "oCode_user_00000000000000001"

			// Over SSE: the code, with spaces a phone keyboard adds.
			sc := createCodeScene(t, srv.URL)
			if strings.Join(sc.Methods, ",") != "qr,code,oauth" || sc.AccountName == "" { // demo mode: every method
				t.Fatalf("scene answer: methods %v account %q", sc.Methods, sc.AccountName)
			}
			stream, resp := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
			if stream == nil {
				t.Fatalf("stream: %d", resp.StatusCode)
			}
			if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
				t.Fatalf("first event %+v", ev)
			}
			reply, msgID := sendText(t, sim, openID, "  "+sc.LoginCode+"\n", 0)
			if reply.Text != "微信用户, 登录成功! 这是你第 1 次登录, 玩得开心!" {
				t.Fatalf("reply %q", reply.Text)
			}
			ev := stream.Next(t, 5*time.Second)
			v := decodeView(t, ev.Data)
			if ev.Event != "confirmed" || v.Code == "" || v.User == nil || v.User.LoginCount != 1 {
				t.Fatalf("confirmed event %+v", ev)
			}
			stream.WaitClosed(t, 5*time.Second)
			// WeChat's retry (same MsgId): the same reply, counted once.
			again, _ := sendText(t, sim, openID, sc.LoginCode, msgID)
			if again.Text != reply.Text {
				t.Fatalf("retry reply %q, want %q", again.Text, reply.Text)
			}
			// The used code is dead.
			dead, _ := sendText(t, sim, openID, sc.LoginCode, 0)
			if !strings.Contains(dead.Text, "没有找到这个登录码") {
				t.Fatalf("used code: %q", dead.Text)
			}
			if r, out := exchange(t, srv.URL, sc.SceneID, sc.Secret, v.Code); r.StatusCode != http.StatusOK {
				t.Fatalf("exchange: %d %v", r.StatusCode, out)
			}

			// Over long-poll: the second login of the same person.
			sc2 := createCodeScene(t, srv.URL)
			done := make(chan statusView, 1)
			go func() {
				var lv statusView
				apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc2.SceneID+"?wait=20", sc2.Secret, nil, &lv)
				done <- lv
			}()
			waitFor(t, 5*time.Second, "long-poll waiting", func() bool { return metricValue(t, srv.URL, "wxlogin_long_polls_in_flight") == 1 })
			if r, _ := sendText(t, sim, openID, sc2.LoginCode, 0); !strings.Contains(r.Text, "第 2 次登录") {
				t.Fatalf("second login reply %q (the retry must not have counted)", r.Text)
			}
			select {
			case lv := <-done:
				if lv.Status != "confirmed" || lv.Code == "" || lv.User.LoginCount != 2 {
					t.Fatalf("long-poll answer %+v", lv)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("long-poll did not answer")
			}
			for outcome, want := range map[string]float64{"confirmed": 2, "duplicate": 1, "code_miss": 1} {
				if got := labelledMetric(t, srv.URL, `wxlogin_login_codes_total{outcome="`+outcome+`"}`); got != want {
					t.Errorf("login_codes_total{%s} = %v, want %v", outcome, got, want)
				}
			}
		})
	}
}

// TestCodeGuessingLimit: five wrong codes in a row lock the sender out, even
// for a right code, while the scene waits for its owner, who still logs in.
func TestCodeGuessingLimit(t *testing.T) {
	for _, setup := range codeSetups(t) {
		t.Run(setup.name, func(t *testing.T) {
			srv := startTestServer(t, setup.env)
			sim := codeSimulator(srv, setup.aes)
			sc := createCodeScene(t, srv.URL)
			wrong := "000000"
			if wrong == sc.LoginCode {
				wrong = "000001"
			}
			for i := range login.CodeMissLimit {
				r, _ := sendText(t, sim, "oGuesser_000000000000000001", wrong, 0)
				if !strings.Contains(r.Text, "没有找到这个登录码") {
					t.Fatalf("miss %d: %q", i+1, r.Text)
				}
			}
			r, _ := sendText(t, sim, "oGuesser_000000000000000001", sc.LoginCode, 0)
			if !strings.Contains(r.Text, "错误的登录码太多") {
				t.Fatalf("right code while locked out: %q", r.Text)
			}
			var v statusView
			apiCall(t, http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v)
			if v.Status != "pending" {
				t.Fatalf("scene %s after the locked-out sender's code", v.Status)
			}
			if r, _ := sendText(t, sim, "oOwner_000000000000000000001", sc.LoginCode, 0); !strings.Contains(r.Text, "登录成功") {
				t.Fatalf("owner: %q", r.Text)
			}
			if got := labelledMetric(t, srv.URL, `wxlogin_login_codes_total{outcome="too_many_attempts"}`); got != 1 {
				t.Errorf("too_many_attempts = %v", got)
			}
		})
	}
}

// TestCodeSentFromTheSameDevice: the browser tab holds its stream by cookie
// (as EventSource does) while the person, on the same phone, switches to
// WeChat and sends the code; the demo's "simulate sending the code" does
// exactly that through the real webhook.
func TestCodeSentFromTheSameDevice(t *testing.T) {
	srv := startTestServer(t, nil)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Post(srv.URL+"/api/v1/login/scenes", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var sc codeScene
	decodeJSON(t, resp, &sc)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/login/scenes/"+sc.SceneID+"/events", nil)
	stream, err := browser.Do(req) // authorised by the scene's cookie alone
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("stream by cookie: %v %v", stream, err)
	}
	events := readEvents(stream)
	if ev := <-events; ev.Event != "pending" {
		t.Fatalf("first event %+v", ev)
	}
	body := strings.NewReader(`{"scene_id":"` + sc.SceneID + `","code":"` + sc.LoginCode + `"}`)
	devReq, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/dev/code", body)
	devReq.Header.Set("Content-Type", "application/json")
	devReq.Header.Set("Authorization", "Bearer "+sc.Secret) // as the demo page does: the cookie's path is /api/v1/login
	dev, err := browser.Do(devReq)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Reply string }
	decodeJSON(t, dev, &out)
	if dev.StatusCode != http.StatusOK || !strings.Contains(out.Reply, "登录成功") {
		t.Fatalf("dev/code: %d %q", dev.StatusCode, out.Reply)
	}
	select {
	case ev := <-events:
		if ev.Event != "confirmed" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held stream did not learn of the login")
	}
}

// TestCodeOnlyCallsNoWeChatAPI: with only the code method, a real account
// needs no AppSecret and scene creation reaches none of WeChat's APIs (the
// real ones are not reachable from here: any call would fail the creation).
func TestCodeOnlyCallsNoWeChatAPI(t *testing.T) {
	srv := startTestServer(t, map[string]string{
		"WECHAT_APPID": "wx0000000000000001", "WXLOGIN_METHODS": "code",
		"WXLOGIN_ACCOUNT_NAME": "示例公众号", "WXLOGIN_FOLLOW_QR": "https://example.com/follow.png",
	})
	sc := createCodeScene(t, srv.URL)
	if sc.QRURL != "" || strings.Join(sc.Methods, ",") != "code" || sc.AccountName != "示例公众号" || sc.FollowQR != "https://example.com/follow.png" {
		t.Fatalf("code-only scene: %+v", sc)
	}
	sim := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: clusterToken, AppID: "wx0000000000000001"}
	if r, _ := sendText(t, sim, "oCodeOnly_0000000000000000001", sc.LoginCode, 0); !strings.Contains(r.Text, "登录成功") {
		t.Fatalf("reply %q", r.Text)
	}
	if n := labelledMetric(t, srv.URL, `wxlogin_wechat_api_calls_total{api="qrcode/create",errcode="0"}`); n != 0 {
		t.Fatalf("%v qrcode/create calls", n)
	}
}

// TestCodesUniqueAcrossInstances: two instances on one Redis, creating
// scenes at once, never hand out the same code.
func TestCodesUniqueAcrossInstances(t *testing.T) {
	prefix := newClusterPrefix(t, clusterRedis)
	servers := startCluster(t, 2, clusterRedis, prefix, nil)
	const perInstance = 300
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for _, srv := range servers {
		for range 4 {
			wg.Go(func() {
				for range perInstance / 4 {
					var s codeScene
					if r := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/scenes", "", nil, &s); r.StatusCode != http.StatusCreated {
						t.Errorf("create: %d", r.StatusCode)
						return
					}
					mu.Lock()
					if other, dup := seen[s.LoginCode]; dup {
						t.Errorf("code %s given to scenes %s and %s", s.LoginCode, other, s.SceneID)
					}
					seen[s.LoginCode] = s.SceneID
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(seen) != 2*perInstance {
		t.Fatalf("%d distinct codes for %d scenes", len(seen), 2*perInstance)
	}
}

func decodeJSON(t testing.TB, resp *http.Response, out any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode answer (%d): %v", resp.StatusCode, err)
	}
}

// readEvents parses a stream's events (those with data) until it ends.
func readEvents(resp *http.Response) <-chan sseEvent {
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		rd := ssetest.NewReader(resp.Body)
		for {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			if ev.Data != "" {
				ch <- ev
			}
		}
	}()
	return ch
}

// TestCodeLoginConfirmMode: in confirm mode a login code, like a scan, only
// marks the scene scanned and gets the confirm link; the link confirms it
// and counts the login once.
func TestCodeLoginConfirmMode(t *testing.T) {
	srv := startTestServer(t, confirmEnv(t))
	sim := secSimulator(srv, "")
	const alice = "oCONFIRM_code_alice_000000001"
	var sc codeScene
	if r := apiCall(t, http.MethodPost, srv.URL+"/api/v1/login/scenes", "", nil, &sc); r.StatusCode != http.StatusCreated || sc.LoginCode == "" {
		t.Fatalf("create: %d %+v", r.StatusCode, sc)
	}
	stream, _ := openStream(t, srv.URL, sc.SceneID, sc.Secret, "")
	if ev := stream.Next(t, 5*time.Second); ev.Event != "pending" {
		t.Fatalf("first event %q", ev.Event)
	}
	msg := wechat.TextMessage(alice, sc.LoginCode, msgIDs.Add(1), time.Now())
	link, text := scanForLink(t, sim, msg)
	if _, again := scanForLink(t, sim, msg); again != text {
		t.Fatalf("a retried message got another reply:\n%q\n%q", text, again)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "scanned" {
		t.Fatalf("after the code: %+v", ev)
	}
	if status, _, body := confirmPageAt(t, srv.URL, link, decision("confirm")); status != http.StatusOK || !strings.Contains(body, "第 1 次登录") {
		t.Fatalf("confirm: %d %s", status, body)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Event != "confirmed" {
		t.Fatalf("after confirming: %+v", ev)
	}
}
