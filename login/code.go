package login

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode"
)

// Login by message code: the page shows a scene's LoginCode, the person
// sends it to the Official Account as a text message, and the scene is
// confirmed for the sender through Confirm, as a scan would be.
//
// Six digits: easy to read off a screen and type on a phone keypad, and a
// space of a million against the few thousand scenes that wait at any one
// time. A guess that hits does not reach anyone else's account: it logs a
// stranger's browser in as the guesser, who is then named on that screen.
// Even that is kept rare: CodeMissLimit misses in CodeMissWindow lock the
// sender out for CodeLockout, so one WeChat account gets at most about 720
// guesses a day, each hitting with (waiting scenes / 1 000 000).
const (
	LoginCodeDigits = 6
	CodeMissLimit   = 5
	CodeMissWindow  = 10 * time.Minute
	CodeLockout     = 10 * time.Minute
	// loginCodeTries bounds the draws for a free code: with 15 000 scenes
	// waiting, eight draws all hitting taken codes happens about once in
	// 10^14 creations.
	loginCodeTries = 8
)

// ErrLoginCodeTaken is returned by SceneStore.CreateScene when another
// waiting scene holds the new scene's LoginCode; nothing was stored.
var ErrLoginCodeTaken = &Error{Code: ECONFLICT, Message: "login code held by another waiting scene"}

// MissPolicy is when wrong codes lock a sender out.
type MissPolicy struct {
	Limit   int           // misses ...
	Window  time.Duration // ... within this long ...
	Lockout time.Duration // ... refuse the sender for this long
}

// DefaultMissPolicy is the contract's: 5 misses in 10 minutes → 10 minutes refused.
var DefaultMissPolicy = MissPolicy{Limit: CodeMissLimit, Window: CodeMissWindow, Lockout: CodeLockout}

// LoginCodeStore is what login by message code needs from storage besides
// scenes. A scene's LoginCode is claimed by SceneStore.CreateScene in the
// same atomic step that stores the scene (ErrLoginCodeTaken when a waiting
// scene holds it, on this instance or any other), and released by the
// update that ends the scene (confirmed, denied, expired, deleted) or when
// its expiry passes.
type LoginCodeStore interface {
	// SceneByLoginCode returns the id of the scene holding code;
	// ErrNotFound when none does.
	SceneByLoginCode(ctx context.Context, code string) (string, error)
	// CodeLockedUntil is when openID may send codes again; zero (or a time
	// not after now) when it may now.
	CodeLockedUntil(ctx context.Context, openID string, now time.Time) (time.Time, error)
	// RecordCodeMiss counts a wrong code from openID at now. When it is the
	// p.Limit-th within p.Window, openID is locked out until now+p.Lockout
	// (returned); otherwise it returns zero.
	RecordCodeMiss(ctx context.Context, openID string, now time.Time, p MissPolicy) (time.Time, error)
}

// ParseLoginCode returns the login code in a text message's content, and
// whether the content has a login code's shape: exactly LoginCodeDigits
// decimal digits, spaces around them forgiven. Full-width digits (what a
// Chinese keyboard may type) count as digits.
func ParseLoginCode(content string) (string, bool) {
	s := strings.TrimFunc(content, unicode.IsSpace)
	if len(s) < LoginCodeDigits || len(s) > 3*LoginCodeDigits { // full-width digits are 3 bytes
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= '０' && r <= '９':
			b.WriteRune('0' + (r - '０'))
		default:
			return "", false
		}
	}
	if b.Len() != LoginCodeDigits {
		return "", false
	}
	return b.String(), true
}

// newLoginCode draws a code uniformly from the whole space, with crypto/rand.
func newLoginCode() string {
	limit := big.NewInt(1)
	for range LoginCodeDigits {
		limit.Mul(limit, big.NewInt(10))
	}
	n, err := rand.Int(rand.Reader, limit)
	if err != nil { // crypto/rand never fails on supported platforms
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return fmt.Sprintf("%0*d", LoginCodeDigits, n)
}

// storeScene stores a new scene; with the code method on it first gives the
// scene a login code no waiting scene holds, drawing again on a collision.
func (s *Service) storeScene(ctx context.Context, sc *Scene) error {
	if !s.methods.Code {
		return s.store.CreateScene(ctx, sc)
	}
	for range loginCodeTries {
		sc.LoginCode = newLoginCode()
		err := s.store.CreateScene(ctx, sc)
		if !errors.Is(err, ErrLoginCodeTaken) {
			return err
		}
	}
	sc.LoginCode = ""
	return Errorf(EUNAVAILABLE, "no free login code; try again")
}

// ConfirmCode handles a login code that openID sent as a message (code is
// what ParseLoginCode returned; dedupeKey identifies the message across
// WeChat's retries). A code a waiting scene holds goes to Confirm, as a scan
// does. A code nobody holds is a miss: it changes nothing but the sender's
// miss count, and a sender with too many misses is refused, even a right
// code, until the lockout ends.
func (s *Service) ConfirmCode(ctx context.Context, openID, code, dedupeKey string) (Result, error) {
	if openID == "" {
		return Result{}, Errorf(EINVALID, "confirm code: an openid is required")
	}
	res, err := s.confirmCode(ctx, openID, code, dedupeKey)
	if err != nil {
		return Result{}, fmt.Errorf("confirm code: %w", err)
	}
	res.Method = MethodMessageCode
	return res, nil
}

func (s *Service) confirmCode(ctx context.Context, openID, code, dedupeKey string) (Result, error) {
	now := s.now().UTC()
	until, err := s.store.CodeLockedUntil(ctx, openID, now)
	if err != nil {
		return Result{}, err
	}
	if until.After(now) {
		// WeChat's retry of a message handled before the lockout began
		// (the fifth miss, say) gets its first reply.
		if rec, err := s.recorded(ctx, dedupeKey); err != nil || rec != nil {
			return derefResult(rec), err
		}
		return Result{Outcome: OutcomeTooManyAttempts, HandledAt: now}, nil
	}
	sceneID, err := s.store.SceneByLoginCode(ctx, code)
	if err == nil {
		return s.Confirm(ctx, Identification{SceneID: sceneID, OpenID: openID, Method: MethodMessageCode, DedupeKey: dedupeKey})
	}
	if !errors.Is(err, ErrNotFound) {
		return Result{}, err
	}
	// No scene holds the code. It may be WeChat's retry of a message that
	// worked (the login released the code): the dedupe record gives that
	// first reply back. Otherwise it is a miss; the record claims the
	// message first, so a retry of a miss is not counted again.
	res, err := s.MarkHandled(ctx, dedupeKey, OutcomeCodeMiss)
	if err != nil || res.Duplicate {
		return res, err
	}
	if _, err := s.store.RecordCodeMiss(ctx, openID, now, s.misses); err != nil {
		return Result{}, err
	}
	return res, nil
}

// recorded returns the Result kept under dedupeKey, nil when the message
// was not handled before. It writes nothing.
func (s *Service) recorded(ctx context.Context, dedupeKey string) (*Result, error) {
	if dedupeKey == "" {
		return nil, nil
	}
	var rec *Result
	err := s.store.Update(ctx, UpdateKeys{DedupeKey: dedupeKey}, func(rs ReadSet) (WriteSet, error) {
		rec = nil
		if rs.Record != nil {
			r := *rs.Record
			r.Duplicate = true
			rec = &r
		}
		return WriteSet{}, nil
	})
	return rec, err
}

func derefResult(r *Result) Result {
	if r == nil {
		return Result{}
	}
	return *r
}
