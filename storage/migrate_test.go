package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"wxlogin/login"
	"wxlogin/storage"
)

// refusingSessions is a target whose session writes fail (a full disk, a
// Redis that went away mid-move).
type refusingSessions struct{ storage.Movable }

func (refusingSessions) ImportSession(context.Context, *login.Session) (bool, error) {
	return false, errors.New("disk full")
}

// A session that cannot be written fails the move: an operator must never
// read "moved" when people's sessions were left behind.
func TestMoveReportsAFailedSession(t *testing.T) {
	ctx := context.Background()
	from, err := storage.OpenBolt(filepath.Join(t.TempDir(), "from.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	to, err := storage.OpenBolt(filepath.Join(t.TempDir(), "to.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	u := countLogin(t, from, "o-alice")
	newSession(t, from, u, "ha1", base())

	rep, err := storage.Move(ctx, from, refusingSessions{to}, false, base())
	if err == nil || rep.Sessions != 0 {
		t.Fatalf("move with a failing session write: report %+v, err %v; want an error", rep, err)
	}
	if rep.Users != 1 {
		t.Errorf("users moved before the failure: %d, want 1", rep.Users)
	}
}
