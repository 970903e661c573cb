// Package login is the domain of wxlogin: scenes, their state machine, users,
// error codes and the interfaces the adapters implement. It imports no HTTP,
// database or WeChat types.
//
// Construction: NewService takes its dependencies as arguments and the rest
// as functional options (With…) with documented defaults.
package login

import (
	"context"
	"time"
)

// Status is the state of a login scene.
type Status string

// The statuses of a scene. Scanned and Denied exist only in confirm mode.
const (
	StatusPending   Status = "pending"
	StatusScanned   Status = "scanned"
	StatusConfirmed Status = "confirmed"
	StatusConsumed  Status = "consumed"
	StatusExpired   Status = "expired"
	StatusDenied    Status = "denied"
)

// Terminal reports whether a stream ends after this status.
func (s Status) Terminal() bool {
	return s == StatusConfirmed || s == StatusExpired || s == StatusDenied
}

// Waiting reports whether the scene still waits for a scan or a decision.
func (s Status) Waiting() bool { return s == StatusPending || s == StatusScanned }

// Lifetimes fixed by the contract.
const (
	CodeTTL     = 5 * time.Minute  // the one-time code, from confirmation
	FinishedTTL = 10 * time.Minute // finished scenes stay readable this long
	DedupeTTL   = 24 * time.Hour   // handled-callback keys
	SessionTTL  = 7 * 24 * time.Hour
)

// Scene is one login attempt: one QR code, one browser waiting for it.
type Scene struct {
	ID         string    `json:"id"`
	SecretHash []byte    `json:"secret_hash"` // SHA-256 of the scene secret; the secret itself is never stored
	Status     Status    `json:"status"`
	Version    uint64    `json:"version"` // incremented on every change; the SSE event id
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	QRURL      string    `json:"qr_url"`
	// LoginCode is the code the person may send to the account instead of
	// scanning (the code method); held only while the scene waits.
	LoginCode string `json:"login_code,omitempty"`

	// Who asked for the login, shown on the confirm page (confirm mode).
	ClientIP  string `json:"client_ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`

	OpenID      string    `json:"openid,omitempty"` // who scanned; stays on the server
	ScannedAt   time.Time `json:"scanned_at,omitzero"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"` // consumed, expired or denied
}

// StatusAt is the status as seen at time now: a waiting scene past its expiry is
// expired, and a confirmed scene whose code has lapsed is expired too, even if
// the sweeper has not written that yet.
func (s *Scene) StatusAt(now time.Time) Status {
	switch {
	case s.Status.Waiting() && !now.Before(s.ExpiresAt):
		return StatusExpired
	case s.Status == StatusConfirmed && !now.Before(s.ConfirmedAt.Add(CodeTTL)):
		return StatusExpired
	}
	return s.Status
}

// NextCheck is when the sweeper must look at the scene again: to expire it,
// or to delete it once it has been finished long enough.
func (s *Scene) NextCheck() time.Time {
	switch {
	case s.Status.Waiting():
		return s.ExpiresAt
	case s.Status == StatusConfirmed:
		return s.ConfirmedAt.Add(CodeTTL)
	default:
		return s.FinishedAt.Add(FinishedTTL)
	}
}

// User is a WeChat user known to this service.
type User struct {
	ID             string    `json:"id"` // stable opaque id, never the openid
	OpenID         string    `json:"openid"`
	UnionID        string    `json:"unionid,omitempty"` // the same person across the Open Platform's apps; "" = unknown
	Name           string    `json:"name"`
	LoginCount     int64     `json:"login_count"`
	FirstLoginAt   time.Time `json:"first_login_at,omitzero"`
	LastLoginAt    time.Time `json:"last_login_at,omitzero"`
	UnsubscribedAt time.Time `json:"unsubscribed_at,omitzero"`
}

// Session is a logged-in browser or app. Only the token's hash is stored.
type Session struct {
	TokenHash string    `json:"token_hash"`
	OpenID    string    `json:"openid"`
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Method is how a person was identified for a scene.
type Method string

// The ways of identifying a person. Every one goes through Service.Confirm.
const (
	MethodScan        Method = "scan"         // scanned the scene's QR code
	MethodMessageCode Method = "message_code" // sent the scene's code to the account
	MethodWebAuth     Method = "web_auth"     // WeChat's in-browser authorisation
	MethodConfirmLink Method = "confirm_link" // confirm mode: approved on the confirm page
)

func (m Method) valid() bool {
	switch m {
	case MethodScan, MethodMessageCode, MethodWebAuth, MethodConfirmLink:
		return true
	}
	return false
}

// Identification says that the person with OpenID was identified for a scene.
type Identification struct {
	SceneID string
	OpenID  string
	Method  Method
	// DedupeKey identifies a message that may be delivered again (WeChat
	// retries callbacks); a second delivery gets the first Result and changes
	// nothing. Empty when the request cannot repeat itself.
	DedupeKey string
	// UnionID, when WeChat gave one with the identification, is kept on the user.
	UnionID string
}

// Result is what handling a message produced; kept under its dedupe key so
// a retry gets the same answer and changes nothing.
type Result struct {
	Outcome    Outcome   `json:"outcome"`
	Method     Method    `json:"method,omitempty"`   // how the person was identified (the reply's wording)
	SceneID    string    `json:"scene_id,omitempty"` // the scene identified for (a message code names it only through its code)
	Name       string    `json:"name,omitempty"`
	LoginCount int64     `json:"login_count,omitempty"`
	HandledAt  time.Time `json:"handled_at"`
	Duplicate  bool      `json:"-"` // set when this message was handled before
}

// Outcome says what identifying a person (or another message) did.
type Outcome string

// Outcomes of a message or decision.
const (
	OutcomeConfirmed       Outcome = "confirmed"         // the login went through
	OutcomeScanned         Outcome = "scanned"           // confirm mode: waits for the confirm page
	OutcomeAlreadyUsed     Outcome = "already_used"      // the scene was already scanned
	OutcomeExpired         Outcome = "expired"           // the scene expired or is unknown
	OutcomeUnsubscribed    Outcome = "unsubscribed"      // recorded, no reply
	OutcomeIgnored         Outcome = "ignored"           // not ours
	OutcomeDenied          Outcome = "denied"            // confirm mode: denied
	OutcomeDecided         Outcome = "decided_twice"     // confirm mode: link reused
	OutcomeCodeMiss        Outcome = "code_miss"         // a login code no waiting scene holds
	OutcomeTooManyAttempts Outcome = "too_many_attempts" // the sender is locked out after too many misses
)

// UpdateKeys names the records one Update reads and may write. Empty fields are not read.
type UpdateKeys struct {
	SceneID   string
	OpenID    string
	DedupeKey string
}

// ReadSet is what the store read for an Update. Nil pointers mean "not found".
type ReadSet struct {
	Scene  *Scene
	User   *User
	Record *Result // the Result kept under DedupeKey: the message was handled before
}

// WriteSet is what an Update commits. Nil pointers are left unchanged.
type WriteSet struct {
	Scene       *Scene
	DeleteScene bool
	User        *User
	Record      *Result // kept under DedupeKey
}

// UpdateFunc decides a change from what was read. A store may call it more than
// once (Redis retries it after an optimistic-lock conflict): it must be free of side effects.
type UpdateFunc func(ReadSet) (WriteSet, error)

// SceneStore keeps scenes and users and changes them together. Every Update
// is atomic: it commits all of its WriteSet or nothing, and no other Update
// on the same keys interleaves with it.
type SceneStore interface {
	CreateScene(ctx context.Context, s *Scene) error
	Scene(ctx context.Context, id string) (*Scene, error) // ErrNotFound when missing
	User(ctx context.Context, openID string) (*User, error)
	Update(ctx context.Context, k UpdateKeys, fn UpdateFunc) error
}

// SessionStore keeps sessions, by the hash of their token.
type SessionStore interface {
	CreateSession(ctx context.Context, s *Session) error
	Session(ctx context.Context, tokenHash string) (*Session, error)
	DeleteSession(ctx context.Context, tokenHash string) error
}

// MaintenanceStore is what the sweeper needs: what is due, and what to drop.
type MaintenanceStore interface {
	// DueScenes lists scenes whose NextCheck is at or before now, at most limit.
	DueScenes(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Purge removes dedupe records and sessions that expired before now.
	Purge(ctx context.Context, now time.Time) error
}

// HealthChecker reports whether storage answers.
type HealthChecker interface {
	Ping(ctx context.Context) error
}

// Store is all of storage, as the process wires it.
type Store interface {
	SceneStore
	SessionStore
	WebAuthStateStore
	MaintenanceStore
	LoginCodeStore
	HealthChecker
	Close() error
}

// Notifier pushes a scene's new state to everyone waiting on it, on this
// instance and others. It is called after the change is committed.
type Notifier interface {
	Notify(ctx context.Context, v View)
}

// QR is a WeChat QR code for one scene.
type QR struct {
	URL    string // the content to encode
	Ticket string
}

// QRIssuer asks WeChat for a temporary QR code whose scene string is sceneID.
type QRIssuer interface {
	IssueQR(ctx context.Context, sceneID string, ttl time.Duration) (QR, error)
}
