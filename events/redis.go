package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisTransport carries scene updates between instances over Redis pub/sub.
//
// All updates go through ONE channel shared by every scene (prefix+"events"),
// and each instance filters locally: Hub.deliver drops an update for a scene
// nobody waits on here with one map lookup. Why not one channel per scene:
//   - one subscription per instance for its whole life, whatever the number
//     of streams; opening and closing a stream costs no SUBSCRIBE/UNSUBSCRIBE
//     round trip (thousands a minute at peak), and a reconnect re-subscribes
//     one channel, not every open stream's;
//   - no window between "stream opened" and "SUBSCRIBE acknowledged" in which
//     a change could be missed: the instance is always subscribed.
//
// The price is that every instance receives every update, a few hundred bytes
// each. A login scene has a handful of updates in its life and WeChat caps QR
// codes at 100 000 a day per account, so that is a few messages a second at
// most. Per-scene channels would only pay off at traffic far beyond that.
//
// Messages published while an instance is disconnected are lost (pub/sub has
// no history): after every (re)subscribe Run calls resync, and the hub makes
// every stream and long-poll re-read the scene from the store.
type RedisTransport struct {
	rdb        *redis.Client
	channel    string
	log        *slog.Logger
	idleCheck  time.Duration
	maxBackoff time.Duration
}

// RedisOption configures a RedisTransport.
type RedisOption func(*RedisTransport)

// WithRedisLogger sets the logger.
func WithRedisLogger(l *slog.Logger) RedisOption { return func(t *RedisTransport) { t.log = l } }

// WithIdleCheck sets how long the subscription may be silent before Run
// pings it; a ping unanswered for as long again means the connection is dead
// (default 15 s). It finds connections that died without a reset.
func WithIdleCheck(d time.Duration) RedisOption { return func(t *RedisTransport) { t.idleCheck = d } }

// NewRedisTransport returns a transport on rdb; prefix is the deployment's
// key prefix (instances with the same prefix see each other's updates).
func NewRedisTransport(rdb *redis.Client, prefix string, opts ...RedisOption) *RedisTransport {
	t := &RedisTransport{
		rdb:        rdb,
		channel:    prefix + "events",
		log:        slog.Default(),
		idleCheck:  15 * time.Second,
		maxBackoff: 2 * time.Second,
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Channel is the pub/sub channel the transport uses.
func (t *RedisTransport) Channel() string { return t.channel }

// Publish sends u to every instance subscribed under the same prefix, this
// one included.
func (t *RedisTransport) Publish(ctx context.Context, u Update) error {
	raw, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode update: %w", err)
	}
	if err := t.rdb.Publish(ctx, t.channel, raw).Err(); err != nil {
		return fmt.Errorf("publish to redis %s: %w", t.channel, err)
	}
	return nil
}

// Run subscribes and delivers updates until ctx ends. Each subscription is a
// fresh connection; when it fails Run waits (100 ms doubling to 2 s) and
// subscribes again, and after every confirmed subscribe it calls resync.
func (t *RedisTransport) Run(ctx context.Context, deliver func(Update), resync func()) error {
	failures := 0
	for ctx.Err() == nil {
		subscribed, err := t.session(ctx, deliver, resync)
		if ctx.Err() != nil {
			break
		}
		if subscribed {
			failures = 0
		}
		failures++
		if failures == 1 || failures%30 == 0 {
			t.log.Warn("redis subscription lost; resubscribing", "channel", t.channel, "attempt", failures, "err", err)
		}
		select { // an unreferenced timer is collected (Go 1.23+): no Stop needed
		case <-ctx.Done():
			return nil
		case <-time.After(t.backoff(failures)):
		}
	}
	return nil
}

// session holds one subscription until it fails. It reports whether the
// subscription was confirmed (so the caller resets its backoff).
func (t *RedisTransport) session(ctx context.Context, deliver func(Update), resync func()) (bool, error) {
	sub := t.rdb.Subscribe(ctx, t.channel)
	defer sub.Close()
	// go-redis does not watch ctx during a blocking read: closing the
	// subscription is what ends it at shutdown.
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	subscribed, pinged := false, false
	for ctx.Err() == nil {
		msg, err := sub.ReceiveTimeout(ctx, t.idleCheck)
		switch {
		case err != nil && isTimeout(err) && subscribed && !pinged:
			// Silent for a while: ask, so a connection that died without a
			// reset is noticed at the next timeout.
			if err := sub.Ping(ctx); err != nil {
				return subscribed, fmt.Errorf("ping subscription: %w", err)
			}
			pinged = true
			continue
		case err != nil:
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == t.channel {
				if !subscribed {
					t.log.Debug("subscribed to scene updates", "channel", t.channel)
				}
				subscribed = true
				resync()
			}
		case *redis.Message:
			var u Update
			if err := json.Unmarshal([]byte(m.Payload), &u); err != nil || u.SceneID == "" {
				t.log.Warn("ignoring a malformed scene update", "channel", t.channel, "err", err)
				continue
			}
			deliver(u)
		}
	}
	return subscribed, ctx.Err()
}

func (t *RedisTransport) backoff(failures int) time.Duration {
	d := 100 * time.Millisecond << min(failures-1, 10)
	return min(d, t.maxBackoff)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
