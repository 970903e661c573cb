package login

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"wxlogin/internal/random"
)

// Defaults of the contract.
const (
	DefaultQRTTL    = 120 * time.Second
	DefaultInterval = 2 * time.Second
	DefaultUserName = "微信用户"
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

	qrTTL        time.Duration
	interval     time.Duration
	confirmLinks bool
	methods      Methods
	misses       MissPolicy
	webAuth      WebAuthExchanger
	unionIDs     *unionIDLookups
	// endSessions, when set, ends a user's sessions when they unfollow the
	// account (WXLOGIN_ON_UNSUBSCRIBE=logout).
	endSessions func(ctx context.Context, userID string) (int, error)
}

// Methods are the ways to log in a deployment offers. Every way ends in the
// same Confirm; they differ in how the person is identified.
type Methods struct {
	QR    bool // a parametric QR code, scanned (needs a verified Service Account)
	Code  bool // a short code the person sends to the account as a message
	OAuth bool // WeChat's web authorisation, inside WeChat's own browser
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (tests move time without sleeping).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithQRTTL sets a scene's lifetime (default 120 s).
func WithQRTTL(d time.Duration) Option { return func(s *Service) { s.qrTTL = d } }

// WithInterval sets the poll interval advertised to clients (default 2 s).
func WithInterval(d time.Duration) Option { return func(s *Service) { s.interval = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithConfirmLinks turns on confirm mode: a scan makes the scene "scanned" and
// only the confirm page makes it "confirmed".
func WithConfirmLinks(on bool) Option { return func(s *Service) { s.confirmLinks = on } }

// WithMissPolicy sets when wrong login codes lock a sender out (default
// DefaultMissPolicy).
func WithMissPolicy(p MissPolicy) Option { return func(s *Service) { s.misses = p } }

// WithMethods sets the login methods on offer (default: QR only). Without
// QR, scene creation asks WeChat for nothing.
func WithMethods(m Methods) Option { return func(s *Service) { s.methods = m } }

// WithWebAuth sets how WeChat's web-authorisation codes are exchanged for
// an openid (needed by the oauth method).
func WithWebAuth(x WebAuthExchanger) Option { return func(s *Service) { s.webAuth = x } }

// WithUnionIDLookup asks l for the unionid of a user who logged in without
// one (WXLOGIN_UNIONID=1). The lookup runs after the login is committed, in
// the background, for at most timeout: it never delays a login.
func WithUnionIDLookup(l UnionIDLookup, timeout time.Duration) Option {
	return func(s *Service) {
		s.unionIDs = &unionIDLookups{lookup: l, timeout: timeout, slots: make(chan struct{}, maxUnionIDLookups)}
	}
}

// NewService returns a Service over the given adapters.
func NewService(store Store, notifier Notifier, qr QRIssuer, opts ...Option) *Service {
	s := &Service{
		store: store, notifier: notifier, qr: qr,
		now:      time.Now,
		log:      slog.Default(),
		qrTTL:    DefaultQRTTL,
		interval: DefaultInterval,
		methods:  Methods{QR: true},
		misses:   DefaultMissPolicy,
	}
	for _, o := range opts {
		o(s)
	}
	if s.unionIDs != nil {
		s.unionIDs.ctx, s.unionIDs.stop = context.WithCancel(context.Background())
	}
	return s
}

// Close ends the background work (unionid lookups) and waits for it. Call it
// before closing the store.
func (s *Service) Close() {
	if s.unionIDs != nil {
		s.unionIDs.stop()
		s.unionIDs.wg.Wait()
	}
}

// Interval is the poll interval clients must respect.
func (s *Service) Interval() time.Duration { return s.interval }

// QRTTL is a scene's lifetime.
func (s *Service) QRTTL() time.Duration { return s.qrTTL }

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// Methods reports the login methods on offer.
func (s *Service) Methods() Methods { return s.methods }

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
// its QR code when that method is on, and stores it.
func (s *Service) CreateScene(ctx context.Context, meta ClientMeta) (*NewScene, error) {
	// Check storage first: a QR code we cannot store would spend one of the
	// account's 100 000 daily qrcode/create calls for nothing, on every
	// retry, for as long as storage is down.
	if err := s.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("create scene: %w", ErrUnavailable("ping storage", err))
	}
	id := random.Token(16)
	secret := random.Token(32)
	var qr QR
	if s.methods.QR {
		var err error
		if qr, err = s.qr.IssueQR(ctx, id, s.qrTTL); err != nil {
			return nil, fmt.Errorf("create scene: %w", err)
		}
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
	if err := s.storeScene(ctx, sc); err != nil {
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
	// UnionID is given by /me only (to the site's back end), not in scene views.
	UnionID string `json:"unionid,omitempty"`
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

// Confirm is where identifying a person becomes a login: every method
// (a scan, a message code, WeChat's in-browser authorisation, the confirm
// page) comes through here. The first identification of a waiting scene
// confirms it and counts the login, all in one atomic update with the
// dedupe record; the change is pushed once it is committed. In confirm mode
// an identification only marks the scene scanned, and the confirm page's
// approval (MethodConfirmLink, by the same person) confirms it. A message
// handled before gets its first Result back, marked Duplicate.
func (s *Service) Confirm(ctx context.Context, id Identification) (Result, error) {
	if id.OpenID == "" || !id.Method.valid() {
		return Result{}, Errorf(EINVALID, "confirm: an openid and a known method are required")
	}
	var unionUnknown bool
	res, err := s.handleOnce(ctx, s.keysFor(id.SceneID, id.OpenID, id.DedupeKey),
		func(rs ReadSet, now time.Time) (WriteSet, Result) {
			ws, res := s.decideConfirm(rs, id, now)
			unionUnknown = ws.User != nil && ws.User.UnionID == ""
			return ws, res
		})
	if err != nil {
		return Result{}, fmt.Errorf("confirm (%s): %w", id.Method, err)
	}
	if res.Outcome == OutcomeConfirmed && !res.Duplicate && unionUnknown {
		s.lookUpUnionIDLater(id.OpenID)
	}
	return res, nil
}

func (s *Service) decideConfirm(rs ReadSet, id Identification, now time.Time) (WriteSet, Result) {
	res := Result{HandledAt: now, Method: id.Method, SceneID: id.SceneID}
	sc := rs.Scene
	if sc == nil || sc.StatusAt(now) == StatusExpired {
		res.Outcome = OutcomeExpired
		return WriteSet{}, res
	}
	next := *sc
	next.Version++
	if id.Method == MethodConfirmLink {
		// The approval of a scan: only by the person who scanned, once.
		if sc.Status != StatusScanned || sc.OpenID != id.OpenID {
			res.Outcome = OutcomeDecided
			return WriteSet{}, res
		}
	} else {
		switch {
		case !sc.Status.Waiting() || (sc.Status == StatusScanned && sc.OpenID != id.OpenID):
			res.Outcome = OutcomeAlreadyUsed
			return WriteSet{}, res
		case sc.Status == StatusScanned:
			// The same person again in confirm mode: send the link again.
			res.Outcome = OutcomeScanned
			return WriteSet{}, res
		}
		next.OpenID, next.ScannedAt = id.OpenID, now
		// Web authorisation needs no confirm page: it starts in the browser
		// that holds the scene (its secret or cookie) and must end in that
		// same browser (a cookie bound to the state), so nobody can make
		// another person's WeChat log in a scene of theirs — the phishing
		// the confirm page guards scans against.
		if s.confirmLinks && id.Method != MethodWebAuth {
			next.Status = StatusScanned
			res.Outcome = OutcomeScanned
			return WriteSet{Scene: &next}, res
		}
	}
	u := countLogin(rs.User, id.OpenID, now)
	if id.UnionID != "" {
		u.UnionID = id.UnionID
	}
	next.Status, next.ConfirmedAt = StatusConfirmed, now
	res.Outcome, res.Name, res.LoginCount = OutcomeConfirmed, u.Name, u.LoginCount
	return WriteSet{Scene: &next, User: u}, res
}

// countLogin returns the user with one more login.
func countLogin(old *User, openID string, now time.Time) *User {
	u := &User{ID: "u_" + random.Token(12), OpenID: openID, Name: DefaultUserName, FirstLoginAt: now}
	if old != nil {
		c := *old
		u = &c
	}
	u.LoginCount++
	u.LastLoginAt = now
	return u
}

// Deny applies the confirm page's refusal (confirm mode). Only the person
// who scanned may decide, once.
func (s *Service) Deny(ctx context.Context, sceneID, openID string) (Result, error) {
	res, err := s.handleOnce(ctx, s.keysFor(sceneID, openID, ""), func(rs ReadSet, now time.Time) (WriteSet, Result) {
		res := Result{HandledAt: now}
		sc := rs.Scene
		switch {
		case sc == nil || sc.StatusAt(now) == StatusExpired:
			res.Outcome = OutcomeExpired
			return WriteSet{}, res
		case sc.Status != StatusScanned || sc.OpenID != openID:
			res.Outcome = OutcomeDecided
			return WriteSet{}, res
		}
		next := *sc
		next.Version++
		next.Status, next.FinishedAt = StatusDenied, now
		res.Outcome = OutcomeDenied
		return WriteSet{Scene: &next}, res
	})
	if err != nil {
		return Result{}, fmt.Errorf("deny: %w", err)
	}
	return res, nil
}

// Unsubscribe records that a user stopped following the account and, with
// WithUnsubscribeLogout, ends their sessions. A retried message ends them
// again (no-op if done): the first attempt may have failed after the record.
func (s *Service) Unsubscribe(ctx context.Context, openID, dedupeKey string) error {
	_, err := s.handleOnce(ctx, UpdateKeys{OpenID: openID, DedupeKey: dedupeKey}, func(rs ReadSet, now time.Time) (WriteSet, Result) {
		res := Result{Outcome: OutcomeUnsubscribed, HandledAt: now}
		if rs.User == nil {
			return WriteSet{}, res
		}
		u := *rs.User
		u.UnsubscribedAt = now
		return WriteSet{User: &u}, res
	})
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	if s.endSessions == nil {
		return nil
	}
	u, err := s.store.User(ctx, openID)
	if errors.Is(err, ErrNotFound) {
		return nil // never logged in: no sessions
	}
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	n, err := s.endSessions(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("unsubscribe: end sessions: %w", err)
	}
	s.log.InfoContext(ctx, "sessions ended on unsubscribe", "user_id", u.ID, "sessions", n)
	return nil
}

// MarkHandled keeps outcome under dedupeKey for a message that changes
// nothing else, and returns the earlier Result if the message was handled before.
func (s *Service) MarkHandled(ctx context.Context, dedupeKey string, outcome Outcome) (Result, error) {
	res, err := s.handleOnce(ctx, UpdateKeys{DedupeKey: dedupeKey}, func(_ ReadSet, now time.Time) (WriteSet, Result) {
		return WriteSet{}, Result{Outcome: outcome, HandledAt: now}
	})
	if err != nil {
		return Result{}, fmt.Errorf("mark handled: %w", err)
	}
	return res, nil
}

// keysFor names what an identification reads; an id that cannot be ours
// reads no scene (and so is treated as expired) instead of reaching storage.
func (s *Service) keysFor(sceneID, openID, dedupeKey string) UpdateKeys {
	k := UpdateKeys{SceneID: sceneID, OpenID: openID, DedupeKey: dedupeKey}
	if !ValidSceneID(sceneID) {
		k.SceneID = ""
	}
	return k
}

// handleOnce runs decide in one atomic update that also keeps its Result
// under the dedupe key (when there is one), and pushes the scene it changed
// once the update is committed. A message whose key is already recorded gets
// the recorded Result, marked Duplicate, and changes nothing.
func (s *Service) handleOnce(ctx context.Context, keys UpdateKeys, decide func(ReadSet, time.Time) (WriteSet, Result)) (Result, error) {
	now := s.now().UTC()
	var res Result
	var changed *Scene
	err := s.store.Update(ctx, keys, func(rs ReadSet) (WriteSet, error) {
		changed = nil
		if rs.Record != nil {
			res = *rs.Record
			res.Duplicate = true
			return WriteSet{}, nil
		}
		var ws WriteSet
		ws, res = decide(rs, now)
		if keys.DedupeKey != "" {
			rec := res
			ws.Record = &rec
		}
		changed = ws.Scene
		return ws, nil
	})
	if err != nil {
		return Result{}, err
	}
	if changed != nil {
		s.notify(ctx, changed)
	}
	return res, nil
}

// Login is a token exchange result.
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
	err = s.store.Update(ctx, UpdateKeys{SceneID: sc.ID, OpenID: sc.OpenID}, func(rs ReadSet) (WriteSet, error) {
		changed, user = nil, rs.User
		cur := rs.Scene
		if cur == nil {
			return WriteSet{}, Errorf(ENOTFOUND, "unknown scene")
		}
		switch cur.StatusAt(now) {
		case StatusConfirmed:
		case StatusConsumed:
			return WriteSet{}, Errorf(ECONFLICT, "this code was already used")
		case StatusExpired:
			return WriteSet{}, Errorf(ECONFLICT, "this code has expired")
		default:
			return WriteSet{}, Errorf(ECONFLICT, "the scene is %s, not confirmed", cur.StatusAt(now))
		}
		next := *cur
		next.Version++
		next.Status, next.FinishedAt = StatusConsumed, now
		changed = &next
		return WriteSet{Scene: &next}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	if user == nil {
		return nil, Errorf(EINTERNAL, "confirmed scene without a user")
	}
	s.notify(ctx, changed)
	token := random.Token(32)
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
	v := viewOfUser(u)
	v.UnionID = u.UnionID
	return v, nil
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
		err := s.store.Update(ctx, UpdateKeys{SceneID: id}, func(rs ReadSet) (WriteSet, error) {
			changed = nil
			sc := rs.Scene
			if sc == nil || now.Before(sc.NextCheck()) {
				return WriteSet{}, nil
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
				return WriteSet{Scene: &next}, nil
			}
			return WriteSet{Scene: sc, DeleteScene: true}, nil
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
