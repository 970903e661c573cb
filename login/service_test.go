package login_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// notifications records what the service published.
type notifications struct {
	mu    sync.Mutex
	views []login.View
}

func (n *notifications) Notify(_ context.Context, v login.View) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.views = append(n.views, v)
}

func (n *notifications) statuses() []login.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []login.Status
	for _, v := range n.views {
		out = append(out, v.Status)
	}
	return out
}

// qrIssuer stands in for WeChat's qrcode/create (the real adapter is tested
// against the stand-in in package wechat).
type qrIssuer struct{}

func (qrIssuer) IssueQR(_ context.Context, id string, ttl time.Duration) (login.QR, error) {
	return login.QR{URL: "http://weixin.qq.com/q/" + id, Ticket: id}, nil
}

func newService(t *testing.T, opts ...login.Option) (*login.Service, *clock, *notifications) {
	t.Helper()
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "svc.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	n := &notifications{}
	opts = append([]login.Option{login.WithClock(clk.Now)}, opts...)
	return login.NewService(store, n, qrIssuer{}, opts...), clk, n
}

func scan(t *testing.T, svc *login.Service, id, openID, key string) login.Result {
	t.Helper()
	rec, err := svc.Confirm(context.Background(), login.Identification{SceneID: id, OpenID: openID, Method: login.MethodScan, DedupeKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func statusOf(t *testing.T, svc *login.Service, ns *login.NewScene) (login.View, error) {
	t.Helper()
	sc, err := svc.Authorize(context.Background(), ns.Scene.ID, ns.Secret)
	if err != nil {
		return login.View{}, err
	}
	return svc.ClientView(context.Background(), sc, ns.Secret)
}

func TestFirstScanWinsAndCountsOnce(t *testing.T) {
	ctx := context.Background()
	svc, _, n := newService(t)
	ns, err := svc.CreateScene(ctx, login.ClientMeta{IP: "1.2.3.4"})
	if err != nil {
		t.Fatal(err)
	}
	if !login.ValidSceneID(ns.Scene.ID) || len(ns.Secret) < 40 {
		t.Fatalf("scene id %q secret %q", ns.Scene.ID, ns.Secret)
	}
	rec := scan(t, svc, ns.Scene.ID, "oA", "k1")
	if rec.Outcome != login.OutcomeConfirmed || rec.LoginCount != 1 {
		t.Fatalf("first scan: %+v", rec)
	}
	if rec.Name != login.DefaultUserName {
		t.Fatalf("first scan's name %q", rec.Name)
	}
	// The same message again: same result, no change.
	again := scan(t, svc, ns.Scene.ID, "oA", "k1")
	if !again.Duplicate || again.LoginCount != 1 || again.Outcome != rec.Outcome || again.Name != rec.Name {
		t.Fatalf("retry: %+v", again)
	}
	// Someone else scans the used code.
	other := scan(t, svc, ns.Scene.ID, "oB", "k2")
	if other.Outcome != login.OutcomeAlreadyUsed {
		t.Fatalf("second person: %+v", other)
	}
	v, err := statusOf(t, svc, ns)
	if err != nil || v.Status != login.StatusConfirmed || v.Version != 2 || v.Code == "" || v.User.LoginCount != 1 {
		t.Fatalf("view: %+v %v", v, err)
	}
	if got := n.statuses(); len(got) != 1 || got[0] != login.StatusConfirmed {
		t.Fatalf("notifications %v", got)
	}
}

func TestConcurrentScansCountOnce(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	confirmed := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oC", Method: login.MethodScan, DedupeKey: "same"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if !rec.Duplicate {
				confirmed++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	v, _ := statusOf(t, svc, ns)
	if confirmed != 1 || v.User.LoginCount != 1 {
		t.Fatalf("%d first results, count %d", confirmed, v.User.LoginCount)
	}
}

func TestExchangeOnce(t *testing.T) {
	ctx := context.Background()
	svc, clk, _ := newService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns.Scene.ID, "oD", "k")
	v, _ := statusOf(t, svc, ns)

	if _, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, "wrong"); login.ErrorCode(err) != login.EINVALID {
		t.Fatalf("wrong code: %v", err)
	}
	if _, err := svc.Exchange(ctx, ns.Scene.ID, "not-the-secret", v.Code); login.ErrorCode(err) != login.EUNAUTHORIZED {
		t.Fatalf("wrong secret: %v", err)
	}
	l, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, v.Code)
	if err != nil || l.Token == "" || l.User.LoginCount != 1 {
		t.Fatalf("exchange: %+v %v", l, err)
	}
	if _, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, v.Code); login.ErrorCode(err) != login.ECONFLICT {
		t.Fatalf("second exchange: %v", err)
	}
	me, err := svc.Me(ctx, l.Token)
	if err != nil || me.LoginCount != 1 {
		t.Fatalf("me: %+v %v", me, err)
	}
	if err := svc.Logout(ctx, l.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Me(ctx, l.Token); login.ErrorCode(err) != login.EUNAUTHORIZED {
		t.Fatalf("me after logout: %v", err)
	}

	// A session ends on its own too.
	ns2, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns2.Scene.ID, "oD", "k2")
	v2, _ := statusOf(t, svc, ns2)
	l2, err := svc.Exchange(ctx, ns2.Scene.ID, ns2.Secret, v2.Code)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(login.SessionTTL)
	if _, err := svc.Me(ctx, l2.Token); login.ErrorCode(err) != login.EUNAUTHORIZED {
		t.Fatalf("expired session: %v", err)
	}
}

func TestCodeExpiresAfterFiveMinutes(t *testing.T) {
	ctx := context.Background()
	svc, clk, _ := newService(t, login.WithQRTTL(time.Hour))
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns.Scene.ID, "oE", "k")
	v, _ := statusOf(t, svc, ns)
	clk.Add(login.CodeTTL)
	if _, err := svc.Exchange(ctx, ns.Scene.ID, ns.Secret, v.Code); login.ErrorCode(err) != login.ECONFLICT {
		t.Fatalf("late exchange: %v", err)
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusExpired || v.Code != "" {
		t.Fatalf("view after code expiry: %+v", v)
	}
}

func TestExpiryIsComputedThenSweptThenGone(t *testing.T) {
	ctx := context.Background()
	svc, clk, n := newService(t, login.WithQRTTL(time.Minute))
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	clk.Add(time.Minute)
	// Before the sweeper runs, reads already say expired, one version ahead.
	v, err := statusOf(t, svc, ns)
	if err != nil || v.Status != login.StatusExpired || v.Version != 2 {
		t.Fatalf("computed expiry: %+v %v", v, err)
	}
	if rec := scan(t, svc, ns.Scene.ID, "oF", "k"); rec.Outcome != login.OutcomeExpired {
		t.Fatalf("scan after expiry: %+v", rec)
	}
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.statuses(); len(got) != 1 || got[0] != login.StatusExpired {
		t.Fatalf("sweep published %v", got)
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusExpired || v.Version != 2 {
		t.Fatalf("swept view: %+v", v)
	}
	clk.Add(login.FinishedTTL)
	if _, err := statusOf(t, svc, ns); login.ErrorCode(err) != login.ENOTFOUND {
		t.Fatalf("after 10 minutes: %v", err)
	}
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Scene(ctx, ns.Scene.ID); err == nil {
		t.Fatal("scene not deleted by the sweeper")
	}
}

func TestConfirmModeStateMachine(t *testing.T) {
	ctx := context.Background()
	svc, _, n := newService(t, login.WithConfirmLinks(true))
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	if rec := scan(t, svc, ns.Scene.ID, "oG", "k1"); rec.Outcome != login.OutcomeScanned {
		t.Fatalf("scan in confirm mode: %+v", rec)
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusScanned || v.Code != "" {
		t.Fatalf("scanned view: %+v", v)
	}
	if rec := scan(t, svc, ns.Scene.ID, "oIntruder", "k2"); rec.Outcome != login.OutcomeAlreadyUsed {
		t.Fatalf("another person's scan: %+v", rec)
	}
	if rec, _ := svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oIntruder", Method: login.MethodConfirmLink}); rec.Outcome != login.OutcomeDecided {
		t.Fatalf("another person's decision: %+v", rec)
	}
	rec, err := svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oG", Method: login.MethodConfirmLink})
	if err != nil || rec.Outcome != login.OutcomeConfirmed || rec.LoginCount != 1 {
		t.Fatalf("confirm: %+v %v", rec, err)
	}
	if rec, _ := svc.Deny(ctx, ns.Scene.ID, "oG"); rec.Outcome != login.OutcomeDecided {
		t.Fatalf("second decision: %+v", rec)
	}
	ns2, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns2.Scene.ID, "oG", "k3")
	if rec, _ := svc.Deny(ctx, ns2.Scene.ID, "oG"); rec.Outcome != login.OutcomeDenied {
		t.Fatalf("deny: %+v", rec)
	}
	if v, _ := statusOf(t, svc, ns2); v.Status != login.StatusDenied {
		t.Fatalf("denied view: %+v", v)
	}
	want := []login.Status{login.StatusScanned, login.StatusConfirmed, login.StatusScanned, login.StatusDenied}
	got := n.statuses()
	if len(got) != len(want) {
		t.Fatalf("notifications %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("notifications %v, want %v", got, want)
		}
	}
}

func TestUnsubscribeIsRecorded(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	scan(t, svc, ns.Scene.ID, "oH", "k1")
	if err := svc.Unsubscribe(ctx, "oH", "k2"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Unsubscribe(ctx, "oNobody", "k3"); err != nil {
		t.Fatal(err)
	}
	v, _ := statusOf(t, svc, ns)
	if v.User == nil || v.User.LoginCount != 1 {
		t.Fatalf("unsubscribe changed the count: %+v", v)
	}
}

func TestValidSceneID(t *testing.T) {
	for id, want := range map[string]bool{
		"AAAAAAAAAAAAAAAAAAAAAA":  true,
		"abc-_09ABCxyzABCxyz012":  true,
		"AAAAAAAAAAAAAAAAAAAAA":   false,
		"AAAAAAAAAAAAAAAAAAAAAAA": false,
		"AAAAAAAAAA/AAAAAAAAAAA":  false,
		"":                        false,
	} {
		if got := login.ValidSceneID(id); got != want {
			t.Errorf("ValidSceneID(%q) = %v", id, got)
		}
	}
}

// failingPing is a store whose Ping fails (storage down).
type failingPing struct{ login.Store }

func (failingPing) Ping(context.Context) error { return errors.New("connection refused") }

// countingIssuer counts qrcode/create calls.
type countingIssuer struct{ calls int }

func (c *countingIssuer) IssueQR(ctx context.Context, id string, ttl time.Duration) (login.QR, error) {
	c.calls++
	return qrIssuer{}.IssueQR(ctx, id, ttl)
}

func TestCreateSceneSpendsNoQuotaWhenStorageIsDown(t *testing.T) {
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "down.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	qr := &countingIssuer{}
	svc := login.NewService(failingPing{store}, &notifications{}, qr)
	_, err = svc.CreateScene(context.Background(), login.ClientMeta{})
	if login.ErrorCode(err) != login.EUNAVAILABLE {
		t.Fatalf("create with storage down: %v", err)
	}
	if qr.calls != 0 {
		t.Fatalf("%d qrcode/create calls while storage was down", qr.calls)
	}
}

// Without the QR method a scene costs no qrcode/create call: login by
// message code works on accounts that WeChat refuses QR codes to.
func TestCreateSceneAsksForQROnlyWhenOffered(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		methods   login.Methods
		wantCalls int
	}{
		{login.Methods{QR: true}, 1},
		{login.Methods{QR: true, Code: true}, 1},
		{login.Methods{Code: true}, 0},
	} {
		store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		qr := &countingIssuer{}
		svc := login.NewService(store, &notifications{}, qr, login.WithMethods(tc.methods))
		ns, err := svc.CreateScene(ctx, login.ClientMeta{})
		store.Close()
		if err != nil {
			t.Fatalf("%+v: %v", tc.methods, err)
		}
		if qr.calls != tc.wantCalls || (ns.Scene.QRURL != "") != (tc.wantCalls > 0) {
			t.Errorf("%+v: %d qrcode/create calls, QR URL %q", tc.methods, qr.calls, ns.Scene.QRURL)
		}
		if svc.Methods() != tc.methods {
			t.Errorf("Methods() = %+v, want %+v", svc.Methods(), tc.methods)
		}
	}
}

// Every way of identifying a person confirms through the same call: the
// first identification confirms and counts once; in confirm mode a scan or
// a message code only marks the scene scanned until the confirm link
// approves. Web authorisation confirms at once even then: it starts and ends
// in the browser that holds the scene, so it cannot be the phishing the
// confirm page is there for (and no WeChat message would carry the link).
func TestEveryMethodConfirmsThroughOnePath(t *testing.T) {
	ctx := context.Background()
	for _, m := range []login.Method{login.MethodScan, login.MethodMessageCode, login.MethodWebAuth} {
		t.Run(string(m), func(t *testing.T) {
			svc, _, n := newService(t)
			ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
			id := login.Identification{SceneID: ns.Scene.ID, OpenID: "oM", Method: m, DedupeKey: "k-" + string(m)}
			res, err := svc.Confirm(ctx, id)
			if err != nil || res.Outcome != login.OutcomeConfirmed || res.LoginCount != 1 || res.Duplicate {
				t.Fatalf("first: %+v %v", res, err)
			}
			if again, err := svc.Confirm(ctx, id); err != nil || !again.Duplicate || again.LoginCount != 1 {
				t.Fatalf("retry: %+v %v", again, err)
			}
			id.DedupeKey = "" // a request that cannot repeat itself keeps no record
			if other, err := svc.Confirm(ctx, id); err != nil || other.Outcome != login.OutcomeAlreadyUsed || other.Duplicate {
				t.Fatalf("again without a key: %+v %v", other, err)
			}
			if got := n.statuses(); len(got) != 1 || got[0] != login.StatusConfirmed {
				t.Fatalf("notifications %v", got)
			}
		})
		t.Run(string(m)+"/confirm-mode", func(t *testing.T) {
			svc, _, _ := newService(t, login.WithConfirmLinks(true))
			ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
			res, err := svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oM", Method: m})
			if m == login.MethodWebAuth {
				if err != nil || res.Outcome != login.OutcomeConfirmed || res.LoginCount != 1 {
					t.Fatalf("web authorisation in confirm mode: %+v %v; want confirmed at once", res, err)
				}
				return
			}
			if err != nil || res.Outcome != login.OutcomeScanned {
				t.Fatalf("identify: %+v %v", res, err)
			}
			res, err = svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oM", Method: login.MethodConfirmLink})
			if err != nil || res.Outcome != login.OutcomeConfirmed || res.LoginCount != 1 {
				t.Fatalf("approve: %+v %v", res, err)
			}
		})
	}
}

func TestConfirmLinkWithoutAScanDecidesNothing(t *testing.T) {
	ctx := context.Background()
	svc, _, n := newService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	res, err := svc.Confirm(ctx, login.Identification{SceneID: ns.Scene.ID, OpenID: "oL", Method: login.MethodConfirmLink})
	if err != nil || res.Outcome != login.OutcomeDecided {
		t.Fatalf("link on a pending scene: %+v %v", res, err)
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusPending || len(n.statuses()) != 0 {
		t.Fatalf("changed: %+v %v", v, n.statuses())
	}
}

func TestConfirmRefusesIncompleteIdentification(t *testing.T) {
	ctx := context.Background()
	svc, _, n := newService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	for name, id := range map[string]login.Identification{
		"no openid":      {SceneID: ns.Scene.ID, Method: login.MethodScan, DedupeKey: "k1"},
		"no method":      {SceneID: ns.Scene.ID, OpenID: "oX", DedupeKey: "k2"},
		"unknown method": {SceneID: ns.Scene.ID, OpenID: "oX", Method: "telepathy", DedupeKey: "k3"},
	} {
		if _, err := svc.Confirm(ctx, id); login.ErrorCode(err) != login.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusPending || len(n.statuses()) != 0 {
		t.Fatalf("changed: %+v %v", v, n.statuses())
	}
	// Nothing was recorded under the refused keys either.
	if res, err := svc.MarkHandled(ctx, "k1", login.OutcomeIgnored); err != nil || res.Duplicate {
		t.Fatalf("a refused identification left a record: %+v %v", res, err)
	}
}

func TestMarkHandledOnce(t *testing.T) {
	ctx := context.Background()
	svc, clk, _ := newService(t)
	first, err := svc.MarkHandled(ctx, "k-text", login.OutcomeIgnored)
	if err != nil || first.Outcome != login.OutcomeIgnored || first.Duplicate {
		t.Fatalf("first: %+v %v", first, err)
	}
	clk.Add(time.Minute)
	again, err := svc.MarkHandled(ctx, "k-text", login.OutcomeExpired)
	if err != nil || !again.Duplicate || again.Outcome != login.OutcomeIgnored || !again.HandledAt.Equal(first.HandledAt) {
		t.Fatalf("again: %+v %v", again, err)
	}
}
