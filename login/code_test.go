package login_test

import (
	"context"
	"testing"
	"time"

	"wxlogin/login"
)

func TestParseLoginCode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"123456", "123456", true},
		{"  123456\n", "123456", true},
		{"\u3000０１２３４５\t", "012345", true}, // full-width digits and space
		{"12345", "", false},
		{"1234567", "", false},
		{"123 456", "", false},
		{"12345a", "", false},
		{"١٢٣٤٥٦", "", false}, // Arabic-Indic digits are not ours
		{"", "", false},
		{"hello", "", false},
		{"１２３４５６７", "", false},
	} {
		got, ok := login.ParseLoginCode(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseLoginCode(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func codeService(t *testing.T, opts ...login.Option) (*login.Service, *clock, *notifications) {
	t.Helper()
	return newService(t, append([]login.Option{login.WithMethods(login.Methods{QR: true, Code: true})}, opts...)...)
}

func sendCode(t *testing.T, svc *login.Service, openID, code, key string) login.Result {
	t.Helper()
	res, err := svc.ConfirmCode(context.Background(), openID, code, key)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCodeLoginConfirmsOnceAndDies(t *testing.T) {
	ctx := context.Background()
	svc, _, n := codeService(t)
	ns, err := svc.CreateScene(ctx, login.ClientMeta{})
	if err != nil {
		t.Fatal(err)
	}
	code := ns.Scene.LoginCode
	if c, ok := login.ParseLoginCode(code); !ok || c != code {
		t.Fatalf("scene's login code %q has not the code's shape", code)
	}
	res := sendCode(t, svc, "oA", code, "m1")
	if res.Outcome != login.OutcomeConfirmed || res.LoginCount != 1 || res.Method != login.MethodMessageCode {
		t.Fatalf("code login: %+v", res)
	}
	again := sendCode(t, svc, "oA", code, "m1") // WeChat's retry of the same MsgId
	if !again.Duplicate || again.Outcome != login.OutcomeConfirmed || again.LoginCount != 1 {
		t.Fatalf("retry: %+v", again)
	}
	// The used code is dead: the same text as a new message is a miss.
	if dead := sendCode(t, svc, "oA", code, "m2"); dead.Outcome != login.OutcomeCodeMiss {
		t.Fatalf("used code: %+v", dead)
	}
	v, err := statusOf(t, svc, ns)
	if err != nil || v.Status != login.StatusConfirmed || v.User.LoginCount != 1 {
		t.Fatalf("view %+v %v", v, err)
	}
	if got := n.statuses(); len(got) != 1 {
		t.Fatalf("notifications %v, want one confirmed", got)
	}
}

func TestCodeMethodOffMakesNoCode(t *testing.T) {
	svc, _, _ := newService(t)
	ns, err := svc.CreateScene(context.Background(), login.ClientMeta{})
	if err != nil || ns.Scene.LoginCode != "" {
		t.Fatalf("QR-only scene has login code %q (%v)", ns.Scene.LoginCode, err)
	}
}

func TestCodeConfirmModeMarksScanned(t *testing.T) {
	svc, _, _ := codeService(t, login.WithConfirmLinks(true))
	ns, _ := svc.CreateScene(context.Background(), login.ClientMeta{})
	if res := sendCode(t, svc, "oA", ns.Scene.LoginCode, "m1"); res.Outcome != login.OutcomeScanned {
		t.Fatalf("confirm mode: %+v", res)
	}
	// Someone else with the same code finds it taken, the sender gets the link again.
	if res := sendCode(t, svc, "oB", ns.Scene.LoginCode, "m2"); res.Outcome != login.OutcomeAlreadyUsed {
		t.Fatalf("second sender: %+v", res)
	}
	if res := sendCode(t, svc, "oA", ns.Scene.LoginCode, "m3"); res.Outcome != login.OutcomeScanned {
		t.Fatalf("same sender again: %+v", res)
	}
	res, err := svc.Confirm(context.Background(), login.Identification{SceneID: ns.Scene.ID, OpenID: "oA", Method: login.MethodConfirmLink})
	if err != nil || res.Outcome != login.OutcomeConfirmed {
		t.Fatalf("confirm link: %+v %v", res, err)
	}
}

func TestCodeGuessingLocksOutTheGuesserOnly(t *testing.T) {
	ctx := context.Background()
	svc, clk, _ := codeService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	right := ns.Scene.LoginCode
	wrong := "000000"
	if wrong == right {
		wrong = "000001"
	}
	for i := range login.CodeMissLimit {
		res := sendCode(t, svc, "oGuess", wrong, "g"+string(rune('a'+i)))
		if res.Outcome != login.OutcomeCodeMiss {
			t.Fatalf("miss %d: %+v", i+1, res)
		}
		// A retry of a miss is answered alike and not counted again.
		if res := sendCode(t, svc, "oGuess", wrong, "g"+string(rune('a'+i))); !res.Duplicate || res.Outcome != login.OutcomeCodeMiss {
			t.Fatalf("retry of miss %d: %+v", i+1, res)
		}
	}
	// Locked out, even with the right code; the scene is untouched.
	if res := sendCode(t, svc, "oGuess", right, "g-right"); res.Outcome != login.OutcomeTooManyAttempts {
		t.Fatalf("right code while locked out: %+v", res)
	}
	if v, _ := statusOf(t, svc, ns); v.Status != login.StatusPending {
		t.Fatalf("scene %s after a refused code", v.Status)
	}
	// Another person still logs in with the right code.
	if res := sendCode(t, svc, "oOwner", right, "o1"); res.Outcome != login.OutcomeConfirmed {
		t.Fatalf("owner: %+v", res)
	}
	// The lockout ends after CodeLockout.
	clk.Add(login.CodeLockout + time.Second)
	ns2, _ := svc.CreateScene(ctx, login.ClientMeta{})
	if res := sendCode(t, svc, "oGuess", ns2.Scene.LoginCode, "g-later"); res.Outcome != login.OutcomeConfirmed {
		t.Fatalf("after the lockout: %+v", res)
	}
}

func TestThousandWaitingScenesHaveDistinctCodes(t *testing.T) {
	svc, _, _ := codeService(t)
	seen := map[string]bool{}
	for range 1000 {
		ns, err := svc.CreateScene(context.Background(), login.ClientMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[ns.Scene.LoginCode] {
			t.Fatalf("code %s handed out twice", ns.Scene.LoginCode)
		}
		seen[ns.Scene.LoginCode] = true
	}
}

func TestExpiredSceneCodeAnswersExpiredThenDies(t *testing.T) {
	ctx := context.Background()
	svc, clk, _ := codeService(t)
	ns, _ := svc.CreateScene(ctx, login.ClientMeta{})
	clk.Add(svc.QRTTL() + time.Second)
	// Not swept yet: the code still names the scene, which has expired.
	if res := sendCode(t, svc, "oA", ns.Scene.LoginCode, "e1"); res.Outcome != login.OutcomeExpired {
		t.Fatalf("before the sweep: %+v", res)
	}
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if res := sendCode(t, svc, "oA", ns.Scene.LoginCode, "e2"); res.Outcome != login.OutcomeCodeMiss {
		t.Fatalf("after the sweep: %+v", res)
	}
}
