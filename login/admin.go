package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// UserData is what the operators' tools need from a store: a user found by
// its opaque id, the sessions kept for it, and removing them. Both stores
// keep an id → openid index and a per-user session index, written in the
// same atomic step as the user and the session.
type UserData interface {
	// UserByID finds a user by its opaque id (ErrNotFound when missing).
	UserByID(ctx context.Context, id string) (*User, error)
	// UserSessions lists the user's sessions that have not been purged.
	UserSessions(ctx context.Context, userID string) ([]Session, error)
	// EndSessions deletes every session of the user and says how many.
	EndSessions(ctx context.Context, userID string) (int, error)
	// DeleteUser removes the user, its id and openid mappings, its sessions
	// and every scene that names its openid (one-time codes in flight), in
	// one atomic step. ErrNotFound when there is no such user.
	DeleteUser(ctx context.Context, userID string) (Erased, error)
}

// Erased says what DeleteUser removed.
type Erased struct {
	Sessions int `json:"sessions"`
	Scenes   int `json:"scenes"` // scenes scanned by the user: pending codes and finished logins still readable
}

// WithUnsubscribeLogout ends a user's sessions when they unfollow the
// account (WXLOGIN_ON_UNSUBSCRIBE=logout); without it their sessions stay.
func WithUnsubscribeLogout(end func(ctx context.Context, userID string) (int, error)) Option {
	return func(s *Service) { s.endSessions = end }
}

// AdminActor names who made an admin change in the audit log. The admin API
// has one shared token, so that is all that can be said.
const AdminActor = "admin token"

// UserAdmin answers the operators' requests about one person's data: what is
// kept, deleting it, ending their sessions. Every change is written to the
// audit log with who, when and which user id; never the openid.
type UserAdmin struct {
	store UserData
	now   func() time.Time
	audit *slog.Logger
}

// NewUserAdmin returns a UserAdmin over store, logging changes to audit.
func NewUserAdmin(store UserData, now func() time.Time, audit *slog.Logger) *UserAdmin {
	return &UserAdmin{store: store, now: now, audit: audit}
}

// UserRecord is everything kept about one user, for an access request.
type UserRecord struct {
	ID             string          `json:"id"`
	OpenID         string          `json:"openid"`
	Name           string          `json:"name"`
	LoginCount     int64           `json:"login_count"`
	FirstLoginAt   time.Time       `json:"first_login_at"`
	LastLoginAt    time.Time       `json:"last_login_at"`
	UnsubscribedAt *time.Time      `json:"unsubscribed_at,omitempty"`
	Sessions       []SessionRecord `json:"sessions"`
}

// SessionRecord is one kept session, without its token hash.
type SessionRecord struct {
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ValidUserID reports whether id has the shape of our user ids ("u_" and 16
// base64url characters), so junk is refused before it reaches storage.
func ValidUserID(id string) bool {
	if len(id) != 18 || id[:2] != "u_" {
		return false
	}
	for i := 2; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var errUnknownUser = Errorf(ENOTFOUND, "unknown user")

// Show returns what is kept about the user with this id. Reading a
// person's data is audited as changing it is.
func (a *UserAdmin) Show(ctx context.Context, id, actor string) (*UserRecord, error) {
	if !ValidUserID(id) {
		return nil, errUnknownUser
	}
	u, err := a.store.UserByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errUnknownUser
	}
	if err != nil {
		return nil, fmt.Errorf("show user: %w", err)
	}
	sessions, err := a.store.UserSessions(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("show user: %w", err)
	}
	rec := &UserRecord{ID: u.ID, OpenID: u.OpenID, Name: u.Name, LoginCount: u.LoginCount,
		FirstLoginAt: u.FirstLoginAt.UTC(), LastLoginAt: u.LastLoginAt.UTC(), Sessions: []SessionRecord{}}
	if !u.UnsubscribedAt.IsZero() {
		t := u.UnsubscribedAt.UTC()
		rec.UnsubscribedAt = &t
	}
	now := a.now()
	for _, s := range sessions {
		if now.Before(s.ExpiresAt) { // expired ones are gone for the service, purged soon
			rec.Sessions = append(rec.Sessions, SessionRecord{CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC()})
		}
	}
	a.audit.InfoContext(ctx, "audit: user shown", "action", "show_user", "actor", actor, "user_id", id, "at", now.UTC())
	return rec, nil
}

// Delete removes everything kept about the user: a later login by the same
// person starts a new user with count 1.
func (a *UserAdmin) Delete(ctx context.Context, id, actor string) (Erased, error) {
	if !ValidUserID(id) {
		return Erased{}, errUnknownUser
	}
	erased, err := a.store.DeleteUser(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Erased{}, errUnknownUser
	}
	if err != nil {
		return Erased{}, fmt.Errorf("delete user: %w", err)
	}
	a.audit.InfoContext(ctx, "audit: user deleted", "action", "delete_user", "actor", actor,
		"user_id", id, "at", a.now().UTC(), "sessions", erased.Sessions, "scenes", erased.Scenes)
	return erased, nil
}

// Logout ends every session of the user, on every instance (sessions live in
// the shared store).
func (a *UserAdmin) Logout(ctx context.Context, id, actor string) (int, error) {
	if !ValidUserID(id) {
		return 0, errUnknownUser
	}
	if _, err := a.store.UserByID(ctx, id); errors.Is(err, ErrNotFound) {
		return 0, errUnknownUser
	} else if err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	n, err := a.store.EndSessions(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	a.audit.InfoContext(ctx, "audit: sessions ended", "action", "logout_user", "actor", actor,
		"user_id", id, "at", a.now().UTC(), "sessions", n)
	return n, nil
}
