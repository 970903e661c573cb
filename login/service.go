package login

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Defaults of the contract.
const (
	DefaultQRTTL         = 120 * time.Second
	DefaultInterval      = 2 * time.Second
	DefaultReplyTemplate = "{name}, 登录成功! 这是你第 {count} 次登录, 玩得开心!"
	DefaultUserName      = "微信用户"
)

// Service is the login flow. Handlers and the WeChat adapter call it; it
// changes state only through Store and pushes changes through Notifier after
// they are committed.
type Service struct {
	store    Store
	notifier Notifier
	qr       QRIssuer
	now      func() time.Time
	log      *slog.Logger

	qrTTL         time.Duration
	interval      time.Duration
	replyTemplate string
	confirmLinks  bool
	// endSessions, when set, ends a user's sessions when they unfollow the
	// account (WXLOGIN_ON_UNSUBSCRIBE=logout).
	endSessions func(ctx context.Context, userID string) (int, error)
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (tests move time without sleeping).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithQRTTL sets a scene's lifetime (default 120 s).
func WithQRTTL(d time.Duration) Option { return func(s *Service) { s.qrTTL = d } }

// WithInterval sets the poll interval advertised to clients (default 2 s).
func WithInterval(d time.Duration) Option { return func(s *Service) { s.interval = d } }

// WithReplyTemplate sets the WeChat reply; {name} and {count} are replaced.
func WithReplyTemplate(t string) Option { return func(s *Service) { s.replyTemplate = t } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithConfirmLinks turns on confirm mode: a scan makes the scene "scanned" and
// only the confirm page makes it "confirmed".
func WithConfirmLinks(on bool) Option { return func(s *Service) { s.confirmLinks = on } }

// NewService returns a Service over the given adapters.
func NewService(store Store, notifier Notifier, qr QRIssuer, opts ...Option) *Service {
	s := &Service{
		store: store, notifier: notifier, qr: qr,
		now:           time.Now,
		log:           slog.Default(),
		qrTTL:         DefaultQRTTL,
		interval:      DefaultInterval,
		replyTemplate: DefaultReplyTemplate,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Interval is the poll interval clients must respect.
func (s *Service) Interval() time.Duration { return s.interval }

// QRTTL is a scene's lifetime.
func (s *Service) QRTTL() time.Duration { return s.qrTTL }

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// ConfirmLinks reports whether confirm mode is on.
func (s *Service) ConfirmLinks() bool { return s.confirmLinks }

// ClientMeta describes the browser that asked for a login.
type ClientMeta struct {
	IP        string
	UserAgent string
}

// NewScene is a freshly created scene with its secret, shown once.
type NewScene struct {
	Scene  *Scene
	Secret string
}

// CreateScene makes a scene with a fresh random id and secret, asks WeChat for
// its QR code, and stores it.
func (s *Service) CreateScene(ctx context.Context, meta ClientMeta) (*NewScene, error) {
	// Check storage first: a QR code we cannot store would spend one of the
	// account's 100 000 daily qrcode/create calls for nothing, on every
	// retry, for as long as storage is down.
	if err := s.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("create scene: %w", ErrUnavailable("ping storage", err))
	}
	id := randomToken(16)
	secret := randomToken(32)
	qr, err := s.qr.IssueQR(ctx, id, s.qrTTL)
	if err != nil {
		return nil, fmt.Errorf("create scene: %w", err)
	}
	now := s.now().UTC()
	sc := &Scene{
		ID:         id,
		SecretHash: hashSecret(secret),
		Status:     StatusPending,
		Version:    1,
		CreatedAt:  now,
		ExpiresAt:  now.Add(s.qrTTL),
		QRURL:      qr.URL,
		ClientIP:   meta.IP,
		UserAgent:  truncate(meta.UserAgent, 256),
	}
	if err := s.store.CreateScene(ctx, sc); err != nil {
		return nil, fmt.Errorf("create scene: %w", err)
	}
	return &NewScene{Scene: sc, Secret: secret}, nil
}

// Scene returns a scene without authorisation (for its public QR image).
func (s *Service) Scene(ctx context.Context, id string) (*Scene, error) {
	if !ValidSceneID(id) {
		return nil, ErrNotFound
	}
	return s.store.Scene(ctx, id)
}

// Authorize loads a scene and checks the secret presented for it.
func (s *Service) Authorize(ctx context.Context, id, secret string) (*Scene, error) {
	if secret == "" {
		return nil, Errorf(EUNAUTHORIZED, "the scene's secret is required (Bearer or cookie)")
	}
	if !ValidSceneID(id) {
		return nil, Errorf(ENOTFOUND, "unknown scene")
	}
	sc, err := s.store.Scene(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(ENOTFOUND, "unknown scene")
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(sc.SecretHash, hashSecret(secret)) != 1 {
		return nil, Errorf(EUNAUTHORIZED, "wrong secret for this scene")
	}
	if s.gone(sc) {
		return nil, Errorf(ENOTFOUND, "unknown scene")
	}
	return sc, nil
}

// gone reports whether a finished scene is past its readable window.
func (s *Service) gone(sc *Scene) bool {
	now := s.now()
	st := sc.StatusAt(now)
	switch {
	case st == StatusExpired && sc.Status.Waiting():
		return !now.Before(sc.ExpiresAt.Add(FinishedTTL))
	case st == StatusExpired && sc.Status == StatusConfirmed:
		return !now.Before(sc.ConfirmedAt.Add(CodeTTL + FinishedTTL))
	case !st.Waiting() && st != StatusConfirmed:
		return !now.Before(sc.FinishedAt.Add(FinishedTTL))
	}
	return false
}

// UserView is the user as clients see it: never the openid.
type UserView struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	LoginCount   int64     `json:"login_count"`
	FirstLoginAt time.Time `json:"first_login_at"`
	LastLoginAt  time.Time `json:"last_login_at"`
}

// View is a scene's status as the poll endpoint and every SSE event show it.
// Code is filled per client (it is derived from the client's secret) and is
// the last field so it can be appended to shared event data.
type View struct {
	SceneID   string    `json:"scene_id"`
	Status    Status    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
	Interval  int       `json:"interval"`
	User      *UserView `json:"user,omitempty"`
	Version   uint64    `json:"-"`
	Code      string    `json:"code,omitempty"`
}

// ViewOf renders a scene's status at the current time, without the code.
func (s *Service) ViewOf(ctx context.Context, sc *Scene) (View, error) {
	v := View{
		SceneID:   sc.ID,
		Status:    sc.StatusAt(s.now()),
		ExpiresAt: sc.ExpiresAt.UTC(),
		Interval:  int(s.interval / time.Second),
		Version:   sc.Version,
	}
	if v.Status != sc.Status {
		// Computed from the clock before the sweeper wrote it: one version
		// ahead, the same number the sweeper will publish.
		v.Version++
	}
	if (v.Status == StatusConfirmed || v.Status == StatusConsumed) && sc.OpenID != "" {
		u, err := s.store.User(ctx, sc.OpenID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return View{}, fmt.Errorf("view scene: %w", err)
		}
		if u != nil {
			v.User = viewOfUser(u)
		}
	}
	return v, nil
}

// ClientView is ViewOf plus the one-time code for the holder of secret.
func (s *Service) ClientView(ctx context.Context, sc *Scene, secret string) (View, error) {
	v, err := s.ViewOf(ctx, sc)
	if err != nil {
		return View{}, err
	}
	if v.Status == StatusConfirmed {
		v.Code = CodeFor(secret, sc.ID)
	}
	return v, nil
}

func viewOfUser(u *User) *UserView {
	return &UserView{ID: u.ID, Name: u.Name, LoginCount: u.LoginCount,
		FirstLoginAt: u.FirstLoginAt.UTC(), LastLoginAt: u.LastLoginAt.UTC()}
}

// CodeFor derives a scene's one-time code from its secret. The database never
// holds the code (only the secret's hash), so a stolen database yields no
// usable code; single use and the 5-minute life are enforced by the state
// machine (confirmed → consumed).
func CodeFor(secret, sceneID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("wxlogin one-time code\x00" + sceneID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// ScanEvent is a scan reported by WeChat.
type ScanEvent struct {
	SceneID   string
	OpenID    string
	DedupeKey string
}

// Scan applies a scan: the first scan of a waiting scene confirms it (or, in
// confirm mode, marks it scanned) and counts the login, all in one atomic
// update with the dedupe record. A retried message returns the first result.
func (s *Service) Scan(ctx context.Context, ev ScanEvent) (CallbackRecord, error) {
	now := s.now().UTC()
	var rec CallbackRecord
	var changed *Scene
	keys := Keys{SceneID: ev.SceneID, OpenID: ev.OpenID, DedupeKey: ev.DedupeKey}
	if !ValidSceneID(ev.SceneID) {
		keys.SceneID = ""
	}
	err := s.store.Update(ctx, keys, func(snap Snapshot) (Write, error) {
		changed = nil
		if snap.Record != nil {
			rec = *snap.Record
			rec.Duplicate = true
			return Write{}, nil
		}
		w, r := s.decideScan(snap, ev.OpenID, now)
		rec, changed = r, w.Scene
		return w, nil
	})
	if err != nil {
		return CallbackRecord{}, fmt.Errorf("scan: %w", err)
	}
	if changed != nil {
		s.notify(ctx, changed)
	}
	return rec, nil
}

func (s *Service) decideScan(snap Snapshot, openID string, now time.Time) (Write, CallbackRecord) {
	rec := CallbackRecord{HandledAt: now}
	sc := snap.Scene
	switch {
	case sc == nil || sc.StatusAt(now) == StatusExpired:
		rec.Outcome = OutcomeExpired
		return Write{Record: &rec}, rec
	case !sc.Status.Waiting() || (sc.Status == StatusScanned && sc.OpenID != openID):
		rec.Outcome = OutcomeAlreadyUsed
		return Write{Record: &rec}, rec
	case sc.Status == StatusScanned:
		// The same person scanned again in confirm mode: send the link again.
		rec.Outcome = OutcomeScanned
		return Write{Record: &rec}, rec
	}
	next := *sc
	next.Version++
	next.OpenID = openID
	next.ScannedAt = now
	if s.confirmLinks {
		next.Status = StatusScanned
		rec.Outcome = OutcomeScanned
		return Write{Scene: &next, Record: &rec}, rec
	}
	u := countLogin(snap.User, openID, now)
	next.Status = StatusConfirmed
	next.ConfirmedAt = now
	rec.Outcome, rec.Name, rec.LoginCount = OutcomeConfirmed, u.Name, u.LoginCount
	return Write{Scene: &next, User: u, Record: &rec}, rec
}

// countLogin returns the user with one more login.
func countLogin(old *User, openID string, now time.Time) *User {
	u := &User{ID: "u_" + randomToken(12), OpenID: openID, Name: DefaultUserName, FirstLoginAt: now}
	if old != nil {
		c := *old
		u = &c
	}
	u.LoginCount++
	u.LastLoginAt = now
	return u
}

// Decide applies the confirm page's choice (confirm mode). Only the person who
// scanned may decide, once.
func (s *Service) Decide(ctx context.Context, sceneID, openID string, approve bool) (CallbackRecord, error) {
	now := s.now().UTC()
	var rec CallbackRecord
	var changed *Scene
	err := s.store.Update(ctx, Keys{SceneID: sceneID, OpenID: openID}, func(snap Snapshot) (Write, error) {
		changed = nil
		rec = CallbackRecord{HandledAt: now}
		sc := snap.Scene
		switch {
		case sc == nil || sc.StatusAt(now) == StatusExpired:
			rec.Outcome = OutcomeExpired
			return Write{}, nil
		case sc.Status != StatusScanned || sc.OpenID != openID:
			rec.Outcome = OutcomeDecided
			return Write{}, nil
		}
		next := *sc
		next.Version++
		if !approve {
			next.Status, next.FinishedAt = StatusDenied, now
			rec.Outcome = OutcomeDenied
			changed = &next
			return Write{Scene: &next}, nil
		}
		u := countLogin(snap.User, openID, now)
		next.Status, next.ConfirmedAt = StatusConfirmed, now
		rec.Outcome, rec.Name, rec.LoginCount = OutcomeConfirmed, u.Name, u.LoginCount
		changed = &next
		return Write{Scene: &next, User: u}, nil
	})
	if err != nil {
		return CallbackRecord{}, fmt.Errorf("decide: %w", err)
	}
	if changed != nil {
		s.notify(ctx, changed)
	}
	return rec, nil
}

// Unsubscribe records that a user stopped following the account and, with
// WithUnsubscribeLogout, ends their sessions. A retried message ends them
// again (no-op if done): the first attempt may have failed after the record.
func (s *Service) Unsubscribe(ctx context.Context, openID, dedupeKey string) error {
	now := s.now().UTC()
	var userID string
	err := s.store.Update(ctx, Keys{OpenID: openID, DedupeKey: dedupeKey}, func(snap Snapshot) (Write, error) {
		userID = ""
		if snap.User != nil {
			userID = snap.User.ID
		}
		if snap.Record != nil {
			return Write{}, nil
		}
		rec := &CallbackRecord{Outcome: OutcomeUnsubscribed, HandledAt: now}
		if snap.User == nil {
			return Write{Record: rec}, nil
		}
		u := *snap.User
		u.UnsubscribedAt = now
		return Write{User: &u, Record: rec}, nil
	})
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	if s.endSessions != nil && userID != "" {
		n, err := s.endSessions(ctx, userID)
		if err != nil {
			return fmt.Errorf("unsubscribe: end sessions: %w", err)
		}
		s.log.InfoContext(ctx, "sessions ended on unsubscribe", "user_id", userID, "sessions", n)
	}
	return nil
}

// RecordOnce stores a dedupe record for a message that changes nothing else,
// and returns the earlier record if the message was handled before.
func (s *Service) RecordOnce(ctx context.Context, dedupeKey string, outcome Outcome) (CallbackRecord, error) {
	now := s.now().UTC()
	var rec CallbackRecord
	err := s.store.Update(ctx, Keys{DedupeKey: dedupeKey}, func(snap Snapshot) (Write, error) {
		if snap.Record != nil {
			rec = *snap.Record
			return Write{}, nil
		}
		rec = CallbackRecord{Outcome: outcome, HandledAt: now}
		return Write{Record: &rec}, nil
	})
	return rec, err
}

// Reply renders the WeChat text for a callback record.
func (s *Service) Reply(rec CallbackRecord) string {
	switch rec.Outcome {
	case OutcomeConfirmed:
		r := strings.NewReplacer("{name}", rec.Name, "{count}", strconv.FormatInt(rec.LoginCount, 10))
		return r.Replace(s.replyTemplate)
	case OutcomeAlreadyUsed:
		return "这个二维码已经用过了, 请刷新网页后重新扫码。 This code was already used; refresh the page for a new one."
	case OutcomeExpired:
		return "二维码已过期, 请刷新网页后重新扫码。 This code has expired; refresh the page for a new one."
	}
	return ""
}

// Session is a token exchange result.
type Login struct {
	Token     string
	ExpiresIn time.Duration
	User      *UserView
}

// Exchange turns a confirmed scene's one-time code into a session. The code
// works once: the scene moves to consumed in the same atomic update.
func (s *Service) Exchange(ctx context.Context, sceneID, secret, code string) (*Login, error) {
	sc, err := s.Authorize(ctx, sceneID, secret)
	if err != nil {
		return nil, err
	}
	if code == "" || subtle.ConstantTimeCompare([]byte(code), []byte(CodeFor(secret, sceneID))) != 1 {
		return nil, Errorf(EINVALID, "wrong code for this scene")
	}
	now := s.now().UTC()
	var user *User
	var changed *Scene
	err = s.store.Update(ctx, Keys{SceneID: sc.ID, OpenID: sc.OpenID}, func(snap Snapshot) (Write, error) {
		changed, user = nil, snap.User
		cur := snap.Scene
		if cur == nil {
			return Write{}, Errorf(ENOTFOUND, "unknown scene")
		}
		switch cur.StatusAt(now) {
		case StatusConfirmed:
		case StatusConsumed:
			return Write{}, Errorf(ECONFLICT, "this code was already used")
		case StatusExpired:
			return Write{}, Errorf(ECONFLICT, "this code has expired")
		default:
			return Write{}, Errorf(ECONFLICT, "the scene is %s, not confirmed", cur.StatusAt(now))
		}
		next := *cur
		next.Version++
		next.Status, next.FinishedAt = StatusConsumed, now
		changed = &next
		return Write{Scene: &next}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	if user == nil {
		return nil, Errorf(EINTERNAL, "confirmed scene without a user")
	}
	s.notify(ctx, changed)
	token := randomToken(32)
	sess := &Session{TokenHash: HashToken(token), OpenID: user.OpenID, UserID: user.ID,
		CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	return &Login{Token: token, ExpiresIn: SessionTTL, User: viewOfUser(user)}, nil
}

// Me returns the user of a session token.
func (s *Service) Me(ctx context.Context, token string) (*UserView, error) {
	if token == "" {
		return nil, Errorf(EUNAUTHORIZED, "a session token is required")
	}
	sess, err := s.store.Session(ctx, HashToken(token))
	if errors.Is(err, ErrNotFound) || (err == nil && !s.now().Before(sess.ExpiresAt)) {
		return nil, Errorf(EUNAUTHORIZED, "unknown or expired session")
	}
	if err != nil {
		return nil, err
	}
	u, err := s.store.User(ctx, sess.OpenID)
	// A session made for a user since deleted must not resolve to the new
	// user of the same person.
	if errors.Is(err, ErrNotFound) || (err == nil && u.ID != sess.UserID) {
		return nil, Errorf(EUNAUTHORIZED, "unknown or expired session")
	}
	if err != nil {
		return nil, err
	}
	return viewOfUser(u), nil
}

// Logout ends a session.
func (s *Service) Logout(ctx context.Context, token string) error {
	if token == "" {
		return Errorf(EUNAUTHORIZED, "a session token is required")
	}
	return s.store.DeleteSession(ctx, HashToken(token))
}

// Sweep expires due scenes (publishing the change) and deletes scenes that
// have been finished long enough. It returns how many scenes it touched.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now().UTC()
	ids, err := s.store.DueScenes(ctx, now, 1000)
	if err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	for _, id := range ids {
		var changed *Scene
		err := s.store.Update(ctx, Keys{SceneID: id}, func(snap Snapshot) (Write, error) {
			changed = nil
			sc := snap.Scene
			if sc == nil || now.Before(sc.NextCheck()) {
				return Write{}, nil
			}
			if sc.StatusAt(now) == StatusExpired && sc.Status != StatusExpired {
				next := *sc
				next.Version++
				next.Status = StatusExpired
				next.FinishedAt = now
				if sc.Status.Waiting() {
					next.FinishedAt = sc.ExpiresAt
				}
				changed = &next
				return Write{Scene: &next}, nil
			}
			return Write{Scene: sc, DeleteScene: true}, nil
		})
		if err != nil {
			return 0, fmt.Errorf("sweep scene: %w", err)
		}
		if changed != nil {
			s.notify(ctx, changed)
		}
	}
	if err := s.store.Purge(ctx, now); err != nil {
		return len(ids), fmt.Errorf("sweep: %w", err)
	}
	return len(ids), nil
}

func (s *Service) notify(ctx context.Context, sc *Scene) {
	v, err := s.ViewOf(ctx, sc)
	if err != nil {
		s.log.Warn("render scene for notify", "scene_id", sc.ID, "err", err)
		return
	}
	v.Version = sc.Version
	s.notifier.Notify(ctx, v)
}

// ValidSceneID reports whether id has the shape of our scene ids, so junk is
// refused before it reaches storage or a stream name.
func ValidSceneID(id string) bool {
	if len(id) != 22 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HashToken is how session tokens are stored.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
