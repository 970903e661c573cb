package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"wxlogin/storage"
)

func runMigrate(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error {
	defPrefix := firstNonEmpty(getenv("WXLOGIN_REDIS_PREFIX"), "wxlogin:")
	from := fs.String("from", "", "the source store: bbolt:PATH or redis://… (required)")
	to := fs.String("to", "", "the target store: bbolt:PATH or redis://… (required)")
	fromPrefix := fs.String("from-prefix", defPrefix, "key prefix of a Redis source (WXLOGIN_REDIS_PREFIX)")
	toPrefix := fs.String("to-prefix", defPrefix, "key prefix of a Redis target (WXLOGIN_REDIS_PREFIX)")
	force := fs.Bool("force", false, "write into a target that already holds users or sessions")
	usage(fs, "wxlogin migrate -from STORE -to STORE [-force]", `
Copies every user (with its id and login count) and every live session from
one store to another: bbolt:PATH or a redis:// (rediss://) URL on either
side. Stop the service first (a bbolt file in use is refused). Scenes and
one-time codes in flight are not moved (they live minutes: people waiting
scan again), nor are callback dedupe records (a day).

Refuses a target that already holds users or sessions unless -force; with
-force a user already in the target is replaced only by one of the same
openid with more logins, so running it twice changes nothing and never
lowers a count. Prints what it moved.`)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return errors.New("-from and -to are required")
	}
	if *from == *to && (!isRedis(*from) || *fromPrefix == *toPrefix) {
		return errors.New("-from and -to name the same store")
	}
	src, closeSrc, err := openMovable(ctx, *from, *fromPrefix, true)
	if err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	defer closeSrc()
	dst, closeDst, err := openMovable(ctx, *to, *toPrefix, false)
	if err != nil {
		return fmt.Errorf("-to: %w", err)
	}
	rep, err := storage.Move(ctx, src, dst, *force, time.Now())
	if cerr := closeDst(); err == nil && cerr != nil {
		err = fmt.Errorf("close the target: %w", cerr)
	}
	if errors.Is(err, storage.ErrTargetNotEmpty) {
		return fmt.Errorf("%s: %w; add -force to merge into it (a user is replaced only by one with more logins)", describeStore(*to, *toPrefix), err)
	}
	fmt.Fprintf(stdout, "moved %d users (%d already in the target with as many logins) and %d sessions (%d already there or expired)\n  from %s\n  to   %s\n",
		rep.Users, rep.UsersKept, rep.Sessions, rep.SessionsKept, describeStore(*from, *fromPrefix), describeStore(*to, *toPrefix))
	fmt.Fprintln(stdout, "not moved: scenes and one-time codes in flight, callback dedupe records")
	return err
}

func isRedis(spec string) bool {
	return strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://")
}

// openMovable opens a store named on the command line. A bbolt source must
// exist; a bbolt target is created if needed.
func openMovable(ctx context.Context, spec, prefix string, source bool) (storage.Movable, func() error, error) {
	switch {
	case strings.HasPrefix(spec, "bbolt:"):
		path := strings.TrimPrefix(spec, "bbolt:")
		if path == "" {
			return nil, nil, errors.New("bbolt: needs a file path, as in bbolt:/var/lib/wxlogin/wxlogin.db")
		}
		if source {
			if _, err := os.Stat(path); err != nil {
				return nil, nil, err
			}
		}
		st, err := storage.OpenBolt(path)
		if err != nil {
			return nil, nil, err
		}
		return st, st.Close, nil
	case isRedis(spec):
		rdb, err := storage.NewRedisClient(spec)
		if err != nil {
			return nil, nil, err
		}
		st := storage.NewRedis(rdb, prefix)
		if err := st.Ping(ctx); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("redis at %s: %w", rdb.Options().Addr, err)
		}
		return st, st.Close, nil
	}
	return nil, nil, fmt.Errorf("%q: want bbolt:PATH or a redis:// URL", spec)
}

// describeStore names a store for the output, without a Redis password.
func describeStore(spec, prefix string) string {
	if !isRedis(spec) {
		return spec
	}
	if u, err := url.Parse(spec); err == nil {
		spec = u.Redacted()
	}
	return spec + " (prefix " + prefix + ")"
}
