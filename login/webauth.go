package login

// Web authorisation, the `oauth` login method: a person inside WeChat's own
// browser cannot scan the QR code on their own screen, so the browser goes
// to WeChat's authorisation page (snsapi_base, silent) and comes back with a
// code that WeChat's API trades for the person's openid.
//
// The `state` that travels through WeChat is random, single use, bound to
// one scene and to where the browser returns, and lives no longer than the
// scene. It is also bound to the browser that started the flow (a cookie
// whose hash the state keeps): snsapi_base asks the person nothing, so
// without that binding anyone could send a victim WeChat's authorisation
// link carrying the state of the attacker's scene, and the victim's WeChat
// would silently log the attacker's browser in as the victim.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"wxlogin/internal/random"
)

// WebAuthState is a started web authorisation, kept under its state.
type WebAuthState struct {
	SceneID     string    `json:"scene_id"`
	ReturnTo    string    `json:"return_to"`
	BindingHash []byte    `json:"binding_hash"` // SHA-256 of the browser's binding cookie
	ExpiresAt   time.Time `json:"expires_at"`   // the scene's expiry
}

// WebAuthStateStore keeps started web authorisations until they expire (on
// every instance: WeChat may send the browser back to another one).
type WebAuthStateStore interface {
	// PutWebAuthState stores a new state; the store may forget it after st.ExpiresAt.
	PutWebAuthState(ctx context.Context, state string, st *WebAuthState) error
	// TakeWebAuthState returns the state and marks it used, atomically: of
	// any number of concurrent takers, on any instance, exactly one sees
	// used == false. A used state stays readable until it expires, so a
	// repeated redirect is recognised. Unknown: ErrNotFound.
	TakeWebAuthState(ctx context.Context, state string) (st *WebAuthState, used bool, err error)
}

// WebAuthIdentity is who WeChat's web authorisation identified.
type WebAuthIdentity struct {
	OpenID   string
	UnionID  string // "" unless WeChat gave one
	Snapshot bool   // WeChat's snapshot page: a virtual openid, not a person
}

// WebAuthExchanger trades the code of WeChat's authorisation page for the
// identity it stands for (sns/oauth2/access_token). Its errors are *Error:
// EINVALID when WeChat refused the code (invalid, expired, already used),
// EQUOTA or EWECHAT when WeChat's API failed.
type WebAuthExchanger interface {
	ExchangeWebAuthCode(ctx context.Context, code string) (WebAuthIdentity, error)
}

// WebAuthStart is what the browser needs to go to WeChat's authorisation.
type WebAuthStart struct {
	State     string
	Binding   string // the browser keeps it in a cookie; the state keeps its hash
	ExpiresAt time.Time
}

// WebAuthStateLen is the length of a state: [A-Za-z0-9] only, since
// silenceper puts it into WeChat's URL unescaped.
const WebAuthStateLen = 32

// StartWebAuth begins a web authorisation for a scene the caller has
// authorised (Authorize), to come back to returnTo (already checked by the
// caller). The scene must still be waiting.
func (s *Service) StartWebAuth(ctx context.Context, sc *Scene, returnTo string) (WebAuthStart, error) {
	if !s.methods.OAuth || s.webAuth == nil {
		return WebAuthStart{}, Errorf(ENOTFOUND, "the oauth login method is off")
	}
	if st := sc.StatusAt(s.now()); st != StatusPending {
		return WebAuthStart{}, Errorf(ECONFLICT, "the scene is %s, not pending", st)
	}
	start := WebAuthStart{State: randomAlnum(WebAuthStateLen), Binding: random.Token(32), ExpiresAt: sc.ExpiresAt}
	err := s.store.PutWebAuthState(ctx, start.State, &WebAuthState{
		SceneID: sc.ID, ReturnTo: returnTo, BindingHash: hashSecret(start.Binding), ExpiresAt: sc.ExpiresAt,
	})
	if err != nil {
		return WebAuthStart{}, fmt.Errorf("start web authorisation: %w", err)
	}
	return start, nil
}

// WebAuthOutcome is how a return from WeChat's authorisation ended; a fixed
// set (a metric label).
type WebAuthOutcome string

// The outcomes of FinishWebAuth.
const (
	WebAuthConfirmed    WebAuthOutcome = "confirmed"     // the scene is logged in
	WebAuthReplayed     WebAuthOutcome = "replayed"      // the same return again (WeChat redirects twice)
	WebAuthAlreadyUsed  WebAuthOutcome = "already_used"  // the scene was confirmed another way first
	WebAuthSceneExpired WebAuthOutcome = "scene_expired" // the scene ended meanwhile
	WebAuthRefused      WebAuthOutcome = "refused"       // the person declined in WeChat (no code)
	WebAuthSnapshot     WebAuthOutcome = "snapshot"      // WeChat's snapshot page: not a person
	WebAuthBadState     WebAuthOutcome = "bad_state"     // unknown, forged or expired state
	WebAuthWrongBrowser WebAuthOutcome = "wrong_browser" // not the browser that started it
	WebAuthBadCode      WebAuthOutcome = "bad_code"      // a code of the wrong shape
	WebAuthCodeRejected WebAuthOutcome = "code_rejected" // WeChat refused the code (40029, 40163, …)
	WebAuthQuota        WebAuthOutcome = "wechat_quota"  // WeChat's API quota is spent
	WebAuthWeChatError  WebAuthOutcome = "wechat_error"  // WeChat's API failed or did not answer
	WebAuthError        WebAuthOutcome = "error"         // our storage failed
)

// WebAuthOutcomes lists every outcome (metrics start them at zero).
var WebAuthOutcomes = []WebAuthOutcome{WebAuthConfirmed, WebAuthReplayed, WebAuthAlreadyUsed,
	WebAuthSceneExpired, WebAuthRefused, WebAuthSnapshot, WebAuthBadState, WebAuthWrongBrowser,
	WebAuthBadCode, WebAuthCodeRejected, WebAuthQuota, WebAuthWeChatError, WebAuthError}

// WebAuthFinish is where a return from WeChat led.
type WebAuthFinish struct {
	Outcome WebAuthOutcome
	// ReturnTo is where the browser goes back to; set once the state and
	// the browser are known to belong together.
	ReturnTo string
	Result   Result // of Confirm, when it ran
}

// FinishWebAuth handles the browser's return from WeChat's authorisation:
// it takes the state (once), checks that the browser holding binding started
// it, trades code for the openid and confirms the scene for that person
// through Confirm, like a scan. code == "" means the person declined. err is
// set only when our storage failed; every other end is an Outcome.
func (s *Service) FinishWebAuth(ctx context.Context, state, binding, code string) (WebAuthFinish, error) {
	if !ValidWebAuthState(state) {
		return WebAuthFinish{Outcome: WebAuthBadState}, nil
	}
	st, used, err := s.store.TakeWebAuthState(ctx, state)
	switch {
	case errors.Is(err, ErrNotFound):
		return WebAuthFinish{Outcome: WebAuthBadState}, nil
	case err != nil:
		return WebAuthFinish{Outcome: WebAuthError}, fmt.Errorf("finish web authorisation: %w", err)
	case !s.now().Before(st.ExpiresAt):
		return WebAuthFinish{Outcome: WebAuthBadState}, nil
	case binding == "" || subtle.ConstantTimeCompare(st.BindingHash, hashSecret(binding)) != 1:
		return WebAuthFinish{Outcome: WebAuthWrongBrowser}, nil
	}
	fin := WebAuthFinish{ReturnTo: st.ReturnTo}
	switch {
	case used:
		// WeChat's browser sometimes follows the redirect twice; the first
		// request does the work, the page learns the result by itself.
		fin.Outcome = WebAuthReplayed
		return fin, nil
	case code == "":
		fin.Outcome = WebAuthRefused
		return fin, nil
	case !validWebAuthCode(code):
		fin.Outcome = WebAuthBadCode
		return fin, nil
	}
	who, err := s.webAuth.ExchangeWebAuthCode(ctx, code)
	if err != nil {
		fin.Outcome = exchangeOutcome(err)
		s.log.Warn("web authorisation: code exchange failed", "scene_id", st.SceneID, "outcome", fin.Outcome, "err", err)
		return fin, nil
	}
	if who.Snapshot {
		fin.Outcome = WebAuthSnapshot
		return fin, nil
	}
	fin.Result, err = s.Confirm(ctx, Identification{SceneID: st.SceneID, OpenID: who.OpenID,
		Method: MethodWebAuth, DedupeKey: "webauth:" + state, UnionID: who.UnionID})
	if err != nil {
		fin.Outcome = WebAuthError
		return fin, fmt.Errorf("finish web authorisation: %w", err)
	}
	switch fin.Result.Outcome {
	case OutcomeConfirmed:
		fin.Outcome = WebAuthConfirmed
	case OutcomeExpired:
		fin.Outcome = WebAuthSceneExpired
	default:
		fin.Outcome = WebAuthAlreadyUsed
	}
	return fin, nil
}

func exchangeOutcome(err error) WebAuthOutcome {
	switch ErrorCode(err) {
	case EINVALID:
		return WebAuthCodeRejected
	case EQUOTA:
		return WebAuthQuota
	}
	return WebAuthWeChatError
}

// ValidWebAuthState reports whether s has the shape of our states.
func ValidWebAuthState(s string) bool {
	if len(s) != WebAuthStateLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validWebAuthCode accepts what WeChat's codes look like (32 characters of
// [A-Za-z0-9] today), with room to grow: silenceper puts the code into the
// API's URL unescaped, so nothing else may get there.
func validWebAuthCode(code string) bool {
	if len(code) == 0 || len(code) > 128 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if c := code[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n characters of [A-Za-z0-9], uniformly (≈5.95 bits each).
func randomAlnum(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails on supported platforms
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4·62: no modulo bias
				out = append(out, alnum[b%62])
			}
		}
	}
	return string(out)
}
