package login

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// UnionIDLookup finds a user's unionid (cgi-bin/user/info); "" when WeChat
// gives none (the account is not bound to an Open Platform account).
type UnionIDLookup interface {
	UnionID(ctx context.Context, openID string) (string, error)
}

// maxUnionIDLookups caps the lookups in flight: when WeChat is slow they
// pile up (each waits for its timeout), and a unionid is not worth more.
const maxUnionIDLookups = 16

// unionIDLookups runs lookups after logins, in the background.
type unionIDLookups struct {
	lookup  UnionIDLookup
	timeout time.Duration
	slots   chan struct{}
	ctx     context.Context // ends at Service.Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// lookUpUnionIDLater fetches the unionid of a user who just logged in
// without one, and keeps it on the user. The login is already committed and
// answered: a slow or failing WeChat costs a log line and a metric (the
// WeChat client's), never a login.
func (s *Service) lookUpUnionIDLater(openID string) {
	l := s.unionIDs
	if l == nil {
		return
	}
	select {
	case l.slots <- struct{}{}:
	default:
		s.log.Warn("unionid lookup skipped: too many in flight")
		return
	}
	l.wg.Go(func() {
		defer func() { <-l.slots }()
		ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
		defer cancel()
		unionID, err := l.lookup.UnionID(ctx, openID)
		if err != nil {
			s.log.Warn("unionid lookup failed", "err", err)
			return
		}
		if unionID == "" {
			return
		}
		if err := s.SetUnionID(ctx, openID, unionID); err != nil {
			s.log.Warn("unionid not stored", "err", err)
		}
	})
}

// SetUnionID keeps a unionid on a known user.
func (s *Service) SetUnionID(ctx context.Context, openID, unionID string) error {
	err := s.store.Update(ctx, UpdateKeys{OpenID: openID}, func(rs ReadSet) (WriteSet, error) {
		if rs.User == nil {
			return WriteSet{}, ErrNotFound
		}
		if rs.User.UnionID == unionID {
			return WriteSet{}, nil
		}
		u := *rs.User
		u.UnionID = unionID
		return WriteSet{User: &u}, nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("set unionid: %w", err)
	}
	return nil
}
