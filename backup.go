package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"wxlogin/handlers"
	"wxlogin/storage"
)

func runBackup(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error {
	out := fs.String("o", "", "the backup `file` to write (required)")
	base := fs.String("url", firstNonEmpty(getenv("WXLOGIN_ADMIN_URL"), localURL(getenv)),
		"the running service (WXLOGIN_ADMIN_URL; default from WXLOGIN_ADDR)")
	usage(fs, "wxlogin backup -o FILE [-url URL]", `
Copies the database of a running wxlogin (bbolt store) to FILE while it keeps
serving logins, through GET /api/v1/admin/backup. The admin token is read
from WXLOGIN_ADMIN_TOKEN (never from a flag: flags show in ps). The copy is
checked against the size and SHA-256 the service sends and opened as a
wxlogin database before it replaces FILE; on any failure FILE is untouched
and the exit status is 1.`)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return errors.New("-o FILE is required")
	}
	token := strings.TrimSpace(getenv("WXLOGIN_ADMIN_TOKEN"))
	if token == "" {
		return errors.New("WXLOGIN_ADMIN_TOKEN is not set (the service's admin token)")
	}
	n, sum, err := downloadBackup(ctx, strings.TrimRight(*base, "/")+"/api/v1/admin/backup", token, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, sha256 %s)\n", *out, n, sum)
	return nil
}

// downloadBackup fetches a backup into a temporary file next to out,
// verifies it, and renames it over out.
func downloadBackup(ctx context.Context, url, token, out string) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", fmt.Errorf("-url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// No overall timeout (a large file takes a while); a service that
	// does not answer at all is given up on.
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 2 * time.Minute, Proxy: http.ProxyFromEnvironment}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("reach the service: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("the service answered %s: %s", resp.Status, errorMessage(resp.Body))
	}
	wantSum := resp.Header.Get(handlers.BackupHeader)
	if resp.ContentLength < 0 || wantSum == "" {
		return 0, "", fmt.Errorf("the answer has no Content-Length or %s header; is %s a wxlogin service?", handlers.BackupHeader, url)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".partial-*")
	if err != nil {
		return 0, "", fmt.Errorf("create a file next to %s: %w", out, err)
	}
	defer os.Remove(tmp.Name()) // gone after the rename; left over only on failure
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, "", fmt.Errorf("receive the backup (%d of %d bytes): %w", n, resp.ContentLength, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != resp.ContentLength {
		return n, "", fmt.Errorf("received %d bytes, the service announced %d", n, resp.ContentLength)
	}
	if sum != wantSum {
		return n, "", fmt.Errorf("the copy's SHA-256 is %s, the service announced %s", sum, wantSum)
	}
	if _, err := storage.CheckSnapshot(tmp.Name()); err != nil {
		return n, "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return n, "", err
	}
	return n, sum, nil
}

// errorMessage is the message of the service's JSON error body, or the
// start of whatever else came back.
func errorMessage(body io.Reader) string {
	raw, _ := io.ReadAll(io.LimitReader(body, 4<<10))
	var e handlers.ErrorBody
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message + " (" + e.Error + ")"
	}
	return strconv.Quote(string(raw))
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
