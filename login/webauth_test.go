package login_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

// exchanger plays WeChat's sns/oauth2/access_token.
type exchanger struct {
	mu    sync.Mutex
	calls int
	fn    func(code string) (login.WebAuthIdentity, error)
}

func (x *exchanger) ExchangeWebAuthCode(_ context.Context, code string) (login.WebAuthIdentity, error) {
	x.mu.Lock()
	x.calls++
	x.mu.Unlock()
	return x.fn(code)
}

// newWebAuthService has the oauth method on and a clock near real time
// (stores keep states by the wall clock).
func newWebAuthService(t *testing.T, x *exchanger, opts ...login.Option) (*login.Service, *clock, *notifications) {
	t.Helper()
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "webauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	n := &notifications{}
	opts = append([]login.Option{login.WithClock(clk.Now), login.WithMethods(login.Methods{OAuth: true}), login.WithWebAuth(x)}, opts...)
	svc := login.NewService(store, n, qrIssuer{}, opts...)
	t.Cleanup(svc.Close)
	return svc, clk, n
}

func person(openID string) *exchanger {
	return &exchanger{fn: func(string) (login.WebAuthIdentity, error) { return login.WebAuthIdentity{OpenID: openID}, nil }}
}

func startWebAuth(t *testing.T, svc *login.Service) (*login.NewScene, login.WebAuthStart) {
	t.Helper()
	ctx := context.Background()
	ns, err := svc.CreateScene(ctx, login.ClientMeta{})
	if err != nil {
		t.Fatal(err)
	}
	start, err := svc.StartWebAuth(ctx, ns.Scene, "/back")
	if err != nil {
		t.Fatal(err)
	}
	if !login.ValidWebAuthState(start.State) || start.Binding == "" || !start.ExpiresAt.Equal(ns.Scene.ExpiresAt) {
		t.Fatalf("start: %+v", start)
	}
	return ns, start
}

func TestWebAuthConfirmsOnceAndReplays(t *testing.T) {
	ctx := context.Background()
	x := &exchanger{fn: func(string) (login.WebAuthIdentity, error) {
		return login.WebAuthIdentity{OpenID: "oWeb", UnionID: "uWeb"}, nil
	}}
	svc, _, n := newWebAuthService(t, x)
	ns, start := startWebAuth(t, svc)
	fin, err := svc.FinishWebAuth(ctx, start.State, start.Binding, "CODE123")
	if err != nil || fin.Outcome != login.WebAuthConfirmed || fin.ReturnTo != "/back" || fin.Result.LoginCount != 1 {
		t.Fatalf("finish: %+v %v", fin, err)
	}
	// WeChat's browser follows the redirect again: back to the page, nothing counted.
	again, err := svc.FinishWebAuth(ctx, start.State, start.Binding, "CODE123")
	if err != nil || again.Outcome != login.WebAuthReplayed || again.ReturnTo != "/back" {
		t.Fatalf("replay: %+v %v", again, err)
	}
	if x.calls != 1 || len(n.statuses()) != 1 {
		t.Fatalf("%d exchanges, notifications %v; want 1 and one confirmed", x.calls, n.statuses())
	}
	sc, _ := svc.Scene(ctx, ns.Scene.ID)
	v, err := svc.ClientView(ctx, sc, ns.Secret)
	if err != nil || v.Status != login.StatusConfirmed || v.Code == "" {
		t.Fatalf("view: %+v %v", v, err)
	}
	l, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, v.Code)
	if err != nil {
		t.Fatal(err)
	}
	me, err := svc.Me(ctx, l.Token)
	if err != nil || me.UnionID != "uWeb" || me.LoginCount != 1 {
		t.Fatalf("me: %+v %v; want the unionid WeChat gave", me, err)
	}
	if l.User.UnionID != "" {
		t.Errorf("the token answer carries the unionid %q; only /me does", l.User.UnionID)
	}
}

func TestWebAuthRefusals(t *testing.T) {
	ctx := context.Background()
	snapshot := &exchanger{fn: func(string) (login.WebAuthIdentity, error) {
		return login.WebAuthIdentity{OpenID: "oVirtual", Snapshot: true}, nil
	}}
	for _, tc := range []struct {
		name        string
		x           *exchanger
		mangle      func(st login.WebAuthStart) (state, binding, code string)
		clockAdd    time.Duration
		want        login.WebAuthOutcome
		wantBack    bool
		wantExchang int
	}{
		{"forged state", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return "A" + st.State[1:], st.Binding, "c"
		}, 0, login.WebAuthBadState, false, 0},
		{"junk state", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return "../../etc", st.Binding, "c"
		}, 0, login.WebAuthBadState, false, 0},
		{"expired state", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return st.State, st.Binding, "c"
		}, login.DefaultQRTTL, login.WebAuthBadState, false, 0},
		{"other browser", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return st.State, "someone-else", "c"
		}, 0, login.WebAuthWrongBrowser, false, 0},
		{"no cookie", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return st.State, "", "c"
		}, 0, login.WebAuthWrongBrowser, false, 0},
		{"declined", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return st.State, st.Binding, ""
		}, 0, login.WebAuthRefused, true, 0},
		{"code with a URL in it", person("oA"), func(st login.WebAuthStart) (string, string, string) {
			return st.State, st.Binding, "x&secret=y"
		}, 0, login.WebAuthBadCode, true, 0},
		{"snapshot user", snapshot, func(st login.WebAuthStart) (string, string, string) {
			return st.State, st.Binding, "c"
		}, 0, login.WebAuthSnapshot, true, 1},
		{"code rejected", &exchanger{fn: func(string) (login.WebAuthIdentity, error) {
			return login.WebAuthIdentity{}, login.Errorf(login.EINVALID, "errcode 40163")
		}}, func(st login.WebAuthStart) (string, string, string) { return st.State, st.Binding, "c" },
			0, login.WebAuthCodeRejected, true, 1},
		{"quota", &exchanger{fn: func(string) (login.WebAuthIdentity, error) {
			return login.WebAuthIdentity{}, login.Errorf(login.EQUOTA, "errcode 45009")
		}}, func(st login.WebAuthStart) (string, string, string) { return st.State, st.Binding, "c" },
			0, login.WebAuthQuota, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, clk, n := newWebAuthService(t, tc.x)
			ns, start := startWebAuth(t, svc)
			clk.Add(tc.clockAdd)
			state, binding, code := tc.mangle(start)
			fin, err := svc.FinishWebAuth(ctx, state, binding, code)
			if err != nil || fin.Outcome != tc.want {
				t.Fatalf("finish: %+v %v; want %s", fin, err, tc.want)
			}
			if (fin.ReturnTo != "") != tc.wantBack {
				t.Errorf("return address %q; want one: %v", fin.ReturnTo, tc.wantBack)
			}
			if tc.x.calls != tc.wantExchang {
				t.Errorf("%d code exchanges; want %d", tc.x.calls, tc.wantExchang)
			}
			if len(n.statuses()) != 0 {
				t.Errorf("notified %v; nothing should change", n.statuses())
			}
			if sc, err := svc.Scene(ctx, ns.Scene.ID); err != nil || sc.Status != login.StatusPending || sc.OpenID != "" {
				t.Errorf("scene %+v %v; want it untouched", sc, err)
			}
		})
	}
}

func TestWebAuthNeedsAPendingSceneAndTheMethod(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newWebAuthService(t, person("oA"))
	ns, start := startWebAuth(t, svc)
	if _, err := svc.FinishWebAuth(ctx, start.State, start.Binding, "c"); err != nil {
		t.Fatal(err)
	}
	sc, _ := svc.Scene(ctx, ns.Scene.ID)
	if _, err := svc.StartWebAuth(ctx, sc, "/"); login.ErrorCode(err) != login.ECONFLICT {
		t.Errorf("start on a confirmed scene: %v; want a conflict", err)
	}
	off, _, _ := newWebAuthService(t, person("oA"), login.WithMethods(login.Methods{QR: true}))
	ns2, _ := off.CreateScene(ctx, login.ClientMeta{})
	if _, err := off.StartWebAuth(ctx, ns2.Scene, "/"); login.ErrorCode(err) != login.ENOTFOUND {
		t.Errorf("start with the method off: %v; want not found", err)
	}
}

// lookup is a unionid lookup that can hang until its context ends.
type lookup struct {
	delay time.Duration
	calls chan string
}

func (l *lookup) UnionID(ctx context.Context, openID string) (string, error) {
	select {
	case <-time.After(l.delay):
	case <-ctx.Done():
		l.calls <- openID
		return "", ctx.Err()
	}
	l.calls <- openID
	return "u-" + openID, nil
}

func TestUnionIDLookupAfterTheLogin(t *testing.T) {
	ctx := context.Background()
	l := &lookup{calls: make(chan string, 4)}
	svc, _, _ := newService(t, login.WithUnionIDLookup(l, time.Second))
	t.Cleanup(svc.Close)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns.Scene.ID, "oScan", "k1")
	if got := <-l.calls; got != "oScan" {
		t.Fatalf("looked up %q", got)
	}
	waitUnionID(t, svc, ns, "u-oScan")
	// Known now: the next login asks WeChat nothing.
	ns2, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns2.Scene.ID, "oScan", "k2")
	svc.Close()
	if len(l.calls) != 0 {
		t.Errorf("a second lookup for a known unionid")
	}
}

func TestUnionIDLookupNeverDelaysALogin(t *testing.T) {
	ctx := context.Background()
	l := &lookup{delay: time.Hour, calls: make(chan string, 4)}
	svc, _, _ := newService(t, login.WithUnionIDLookup(l, 300*time.Millisecond))
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	began := time.Now()
	res := scan(t, svc, ns.Scene.ID, "oSlow", "k1")
	if took := time.Since(began); res.Outcome != login.OutcomeConfirmed || took > 200*time.Millisecond {
		t.Fatalf("scan %+v took %s with a hanging lookup", res, took)
	}
	<-l.calls // cut off by its timeout
	svc.Close()
}

func waitUnionID(t *testing.T, svc *login.Service, ns *login.NewScene, want string) {
	t.Helper()
	ctx := context.Background()
	sc, _ := svc.Scene(ctx, ns.Scene.ID)
	v, err := svc.ClientView(ctx, sc, ns.Secret)
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, v.Code)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		me, err := svc.Me(ctx, l.Token)
		if err != nil {
			t.Fatal(err)
		}
		if me.UnionID == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unionid %q; want %q", me.UnionID, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
