package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"wxlogin/login"
	"wxlogin/storage"
)

// Concurrent updates share journal syncs; one that fails must get its own
// error and write nothing, and must not cost the others their writes.
func TestBoltSharedCommitsIsolateFailures(t *testing.T) {
	db, err := storage.OpenBolt(filepath.Join(t.TempDir(), "commit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	const n = 60
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			openID := fmt.Sprintf("o%d", i)
			errs[i] = db.Update(ctx, login.UpdateKeys{OpenID: openID}, func(login.ReadSet) (login.WriteSet, error) {
				if i%5 == 0 {
					return login.WriteSet{User: &login.User{OpenID: openID, LoginCount: 99}}, login.Errorf(login.ECONFLICT, "no %d", i)
				}
				return login.WriteSet{User: &login.User{OpenID: openID, LoginCount: int64(i)}}, nil
			})
		}()
	}
	wg.Wait()
	for i := range n {
		u, err := db.User(ctx, fmt.Sprintf("o%d", i))
		if i%5 == 0 {
			if login.ErrorCode(errs[i]) != login.ECONFLICT {
				t.Errorf("update %d: err = %v, want its own conflict", i, errs[i])
			}
			if !errors.Is(err, login.ErrNotFound) {
				t.Errorf("failed update %d wrote user %+v", i, u)
			}
			continue
		}
		if errs[i] != nil || err != nil || u.LoginCount != int64(i) {
			t.Errorf("update %d: err %v, read %+v, %v", i, errs[i], u, err)
		}
	}
}
