package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"wxlogin/handlers"
	"wxlogin/login"
	"wxlogin/storage"
)

// adminRequestsPerMinute bounds admin requests per client IP: plenty for
// an operator and a backup job, few for someone guessing the token.
const adminRequestsPerMinute = 60

// adminAPI wires the operators' API when WXLOGIN_ADMIN_TOKEN is set (nil
// otherwise: the routes do not exist).
func adminAPI(cfg *config, store login.Store, log *slog.Logger) *handlers.Admin {
	if cfg.AdminToken == "" {
		return nil
	}
	ad := &handlers.Admin{
		Token:     cfg.AdminToken,
		Users:     login.NewUserAdmin(store.(login.UserData), time.Now, log),
		PerMinute: adminRequestsPerMinute,
	}
	if b, ok := store.(*storage.Bolt); ok {
		ad.Backup = b.Backup
		ad.SpoolDir = filepath.Dir(cfg.DB)
	} else {
		ad.BackupRefusal = "online backup copies the bbolt file; with Redis, back up Redis itself " +
			"(RDB snapshots or AOF), or copy the data to a bbolt file with `wxlogin migrate --to bbolt:FILE`"
	}
	return ad
}

// unsubscribeOptions applies WXLOGIN_ON_UNSUBSCRIBE: with "logout" an
// unfollow ends the person's sessions; "keep" (the default) only records it.
func unsubscribeOptions(cfg *config, store login.Store) []login.Option {
	if cfg.OnUnsubscribe != "logout" {
		return nil
	}
	return []login.Option{login.WithUnsubscribeLogout(store.(login.UserData).EndSessions)}
}
