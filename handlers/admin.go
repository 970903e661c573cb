package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"wxlogin/internal/iplimit"
	"wxlogin/login"
)

// MinAdminTokenLen is the shortest admin token accepted: the token is the
// only thing between the internet and every user's data.
const MinAdminTokenLen = 32

// BackupHeader carries the SHA-256 (hex) of a backup's bytes; with
// Content-Length it lets `wxlogin backup` check the copy is whole.
const BackupHeader = "X-Wxlogin-Sha256"

// BackupFunc takes a consistent snapshot of the store and hands send its
// size and a function that writes it, valid until send returns.
type BackupFunc func(ctx context.Context, send func(size int64, writeTo func(io.Writer) (int64, error)) error) error

// Admin configures the operators' API under /api/v1/admin/ (off when nil).
type Admin struct {
	Token string // at least MinAdminTokenLen characters
	Users *login.UserAdmin
	// Backup streams the database; nil when the store has no single file
	// (Redis), and BackupRefusal says why.
	Backup        BackupFunc
	BackupRefusal string
	// SpoolDir holds a backup while it is sent ("" = the system's temporary
	// directory); beside the database there is room for a copy of it.
	SpoolDir string
	// PerMinute bounds admin requests per client IP (wrong tokens included).
	PerMinute int
}

type adminAPI struct {
	cfg       *Admin
	tokenHash [32]byte
	limit     *iplimit.Limiter
	log       *slog.Logger
}

func registerAdmin(api *echo.Group, cfg *Admin, log *slog.Logger) {
	ad := &adminAPI{cfg: cfg, tokenHash: sha256.Sum256([]byte(cfg.Token)), limit: iplimit.New(cfg.PerMinute), log: log}
	g := api.Group("/admin", ad.authorize)
	g.GET("/backup", ad.backup)
	g.GET("/users/:id", ad.showUser)
	g.DELETE("/users/:id", ad.deleteUser)
	g.POST("/users/:id/logout", ad.logoutUser)
}

// authorize admits a request that carries the admin token. The hashes are
// compared, in constant time, so neither the token's bytes nor its length
// leak through timing. The token is never logged.
func (ad *adminAPI) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if wait, ok := ad.limit.Allow(c.RealIP(), time.Now()); !ok {
			return &login.Error{Code: login.ERATELIMITED, Message: "too many admin requests from your address", RetryAfter: wait}
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		given := sha256.Sum256([]byte(bearer(c)))
		if subtle.ConstantTimeCompare(given[:], ad.tokenHash[:]) != 1 {
			ad.log.Warn("admin: request without the right token", "path", c.Path(), "ip", c.RealIP())
			return login.Errorf(login.EUNAUTHORIZED, "the admin token is required (Authorization: Bearer <WXLOGIN_ADMIN_TOKEN>)")
		}
		return next(c)
	}
}

// backup sends a consistent copy of the bbolt file. The snapshot is first
// spooled to a file beside the database, in one pass that also hashes it:
// bbolt's copy includes free pages, which writers may reuse while it runs,
// so two passes over a live database can differ, and the checksum must
// cover exactly the bytes sent. The read transaction then lasts as long as
// a local copy, not as long as the client takes to download.
func (ad *adminAPI) backup(c echo.Context) error {
	if ad.cfg.Backup == nil {
		return login.Errorf(login.ECONFLICT, "%s", ad.cfg.BackupRefusal)
	}
	start := time.Now()
	spool, err := os.CreateTemp(ad.cfg.SpoolDir, ".wxlogin-backup-*")
	if err != nil {
		return &login.Error{Code: login.EUNAVAILABLE, Message: "cannot make room for the backup", Err: err}
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	h := sha256.New()
	var size, copied int64
	err = ad.cfg.Backup(c.Request().Context(), func(n int64, writeTo func(io.Writer) (int64, error)) error {
		size = n
		if copied, err = writeTo(io.MultiWriter(spool, h)); err != nil {
			return &login.Error{Code: login.EUNAVAILABLE, Message: "cannot copy the database", Err: err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if copied != size {
		return login.Errorf(login.EUNAVAILABLE, "the database copy has %d bytes, its header says %d", copied, size)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return &login.Error{Code: login.EUNAVAILABLE, Message: "cannot read the backup copy", Err: err}
	}
	hdr := c.Response().Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	hdr.Set(BackupHeader, hex.EncodeToString(h.Sum(nil)))
	hdr.Set("Content-Disposition", `attachment; filename="wxlogin-`+start.UTC().Format("20060102T150405Z")+`.db"`)
	c.Response().WriteHeader(http.StatusOK)
	sent, err := io.Copy(c.Response(), spool)
	if err != nil {
		// The client sees a short body, and `wxlogin backup` a size mismatch.
		ad.log.Error("admin: backup stream broke", "bytes", sent, "err", err)
		return nil
	}
	ad.log.Info("admin: backup sent", "actor", login.AdminActor, "bytes", sent, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func (ad *adminAPI) showUser(c echo.Context) error {
	rec, err := ad.cfg.Users.Show(c.Request().Context(), c.Param("id"), login.AdminActor)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec)
}

// UserDeleted is the answer to DELETE /admin/users/{id}.
type UserDeleted struct {
	ID string `json:"id"`
	login.Erased
}

func (ad *adminAPI) deleteUser(c echo.Context) error {
	id := c.Param("id")
	erased, err := ad.cfg.Users.Delete(c.Request().Context(), id, login.AdminActor)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, UserDeleted{ID: id, Erased: erased})
}

// SessionsEnded is the answer to POST /admin/users/{id}/logout.
type SessionsEnded struct {
	ID       string `json:"id"`
	Sessions int    `json:"sessions"`
}

func (ad *adminAPI) logoutUser(c echo.Context) error {
	id := c.Param("id")
	n, err := ad.cfg.Users.Logout(c.Request().Context(), id, login.AdminActor)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SessionsEnded{ID: id, Sessions: n})
}
