package login_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"wxlogin/login"
)

// userDataStub answers UserAdmin from function fields; only what a test sets
// is called.
type userDataStub struct {
	UserByIDFn     func(id string) (*login.User, error)
	UserSessionsFn func(id string) ([]login.Session, error)
	EndSessionsFn  func(id string) (int, error)
	DeleteUserFn   func(id string) (login.Erased, error)
}

func (s *userDataStub) UserByID(_ context.Context, id string) (*login.User, error) {
	return s.UserByIDFn(id)
}
func (s *userDataStub) UserSessions(_ context.Context, id string) ([]login.Session, error) {
	return s.UserSessionsFn(id)
}
func (s *userDataStub) EndSessions(_ context.Context, id string) (int, error) {
	return s.EndSessionsFn(id)
}
func (s *userDataStub) DeleteUser(_ context.Context, id string) (login.Erased, error) {
	return s.DeleteUserFn(id)
}

func TestValidUserID(t *testing.T) {
	for id, want := range map[string]bool{
		"u_Ab3dE5gH7jK9mN1p":    true,
		"u_Ab3dE5gH7jK9mN1-":    true,
		"u_Ab3dE5gH7jK9mN1":     false, // short
		"u_Ab3dE5gH7jK9mN1pq":   false, // long
		"x_Ab3dE5gH7jK9mN1p":    false,
		"u_Ab3dE5gH7jK9mN1/":    false,
		"u_Ab3dE5gH7jK9mN\x00p": false,
		"":                      false,
	} {
		if got := login.ValidUserID(id); got != want {
			t.Errorf("ValidUserID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestUserAdmin(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	const id, openID = "u_Ab3dE5gH7jK9mN1p", "oSecretOpenID_000000000001"
	user := &login.User{ID: id, OpenID: openID, Name: "微信用户", LoginCount: 3, FirstLoginAt: now, LastLoginAt: now}
	stub := &userDataStub{
		UserByIDFn: func(got string) (*login.User, error) {
			if got != id {
				return nil, login.ErrNotFound
			}
			return user, nil
		},
		UserSessionsFn: func(string) ([]login.Session, error) {
			return []login.Session{
				{UserID: id, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)},
				{UserID: id, CreatedAt: now.Add(-8 * 24 * time.Hour), ExpiresAt: now.Add(-time.Hour)}, // expired, not yet purged
			}, nil
		},
		EndSessionsFn: func(string) (int, error) { return 1, nil },
		DeleteUserFn: func(got string) (login.Erased, error) {
			if got != id {
				return login.Erased{}, login.ErrNotFound
			}
			return login.Erased{Sessions: 1, Scenes: 2}, nil
		},
	}
	var logs bytes.Buffer
	admin := login.NewUserAdmin(stub, func() time.Time { return now }, slog.New(slog.NewTextHandler(&logs, nil)))

	rec, err := admin.Show(ctx, id, login.AdminActor)
	if err != nil || rec.OpenID != openID || rec.LoginCount != 3 || len(rec.Sessions) != 1 {
		t.Fatalf("Show = %+v, %v; want the user with its one live session", rec, err)
	}
	if n, err := admin.Logout(ctx, id, login.AdminActor); err != nil || n != 1 {
		t.Fatalf("Logout = %d, %v", n, err)
	}
	if e, err := admin.Delete(ctx, id, login.AdminActor); err != nil || e.Sessions != 1 || e.Scenes != 2 {
		t.Fatalf("Delete = %+v, %v", e, err)
	}
	for _, action := range []string{"show_user", "logout_user", "delete_user"} {
		if !strings.Contains(logs.String(), "action="+action+` actor="admin token" user_id=`+id+" at=2026-12-04T03:00:00") {
			t.Errorf("no audit line for %s in\n%s", action, logs.String())
		}
	}
	if strings.Contains(logs.String(), openID) {
		t.Fatal("the audit log names the openid")
	}

	// Unknown and malformed ids are not_found; junk never reaches the store.
	for _, bad := range []string{"u_0000000000000000", "not-an-id", "../../etc"} {
		if _, err := admin.Show(ctx, bad, login.AdminActor); login.ErrorCode(err) != login.ENOTFOUND {
			t.Errorf("Show(%q): %v", bad, err)
		}
		if _, err := admin.Delete(ctx, bad, login.AdminActor); login.ErrorCode(err) != login.ENOTFOUND {
			t.Errorf("Delete(%q): %v", bad, err)
		}
		if _, err := admin.Logout(ctx, bad, login.AdminActor); login.ErrorCode(err) != login.ENOTFOUND {
			t.Errorf("Logout(%q): %v", bad, err)
		}
	}

	// A storage failure stays a storage failure (503), with nothing audited.
	logs.Reset()
	stub.DeleteUserFn = func(string) (login.Erased, error) {
		return login.Erased{}, login.ErrUnavailable("delete user", errors.New("disk on fire"))
	}
	if _, err := admin.Delete(ctx, id, login.AdminActor); login.ErrorCode(err) != login.EUNAVAILABLE {
		t.Fatalf("Delete on a failing store: %v, want unavailable", err)
	}
	if strings.Contains(logs.String(), "audit") {
		t.Fatalf("a failed delete was audited: %s", logs.String())
	}
}
