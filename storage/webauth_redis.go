package storage

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/redis/go-redis/v9"

	"wxlogin/login"
)

// Web-authorisation states in Redis (under the prefix):
//
//	webauth:<state>       JSON state, expires with its scene
//	webauth_used:<state>  set once, by the one taker that wins (SET NX)
func (r *Redis) webAuthKey(state string) string     { return r.prefix + "webauth:" + state }
func (r *Redis) webAuthUsedKey(state string) string { return r.prefix + "webauth_used:" + state }

// PutWebAuthState stores a new state until the scene expires.
func (r *Redis) PutWebAuthState(ctx context.Context, state string, st *login.WebAuthState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return wrap("put web authorisation state", err)
	}
	ok, err := r.rdb.SetNX(ctx, r.webAuthKey(state), raw, keepFor(st.ExpiresAt)).Result()
	if err != nil {
		return wrap("put web authorisation state", err)
	}
	if !ok {
		return login.Errorf(login.ECONFLICT, "web authorisation state exists")
	}
	return nil
}

// TakeWebAuthState reads the state and claims it with SET NX: whichever
// instance sets the used marker first is the one taker.
func (r *Redis) TakeWebAuthState(ctx context.Context, state string) (*login.WebAuthState, bool, error) {
	raw, err := r.rdb.Get(ctx, r.webAuthKey(state)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, login.ErrNotFound
	}
	if err != nil {
		return nil, false, wrap("take web authorisation state", err)
	}
	var st login.WebAuthState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, false, login.Errorf(login.EINTERNAL, "undecodable web authorisation state")
	}
	first, err := r.rdb.SetNX(ctx, r.webAuthUsedKey(state), "1", keepFor(st.ExpiresAt)).Result()
	if err != nil {
		return nil, false, wrap("take web authorisation state", err)
	}
	return &st, !first, nil
}
