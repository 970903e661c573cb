package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wxlogin/login"
	"wxlogin/storage"
)

// FuzzCheckSnapshot feeds damaged database files to the check that
// `wxlogin restore` and `wxlogin backup` run on a file from outside: it
// must answer with an error, never panic, and never accept a file it then
// cannot open.
func FuzzCheckSnapshot(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	st, err := storage.OpenBolt(path)
	if err != nil {
		f.Fatal(err)
	}
	if err := st.CreateSession(context.Background(), &login.Session{TokenHash: "h", OpenID: "o", UserID: "u_AAAAAAAAAAAAAAAA", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		f.Fatal(err)
	}
	if err := st.Close(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, uint32(0), byte(0))
	f.Add(seed, uint32(4096+16), byte(0xff))
	f.Add(seed[:4096], uint32(0), byte(0))
	f.Fuzz(func(t *testing.T, file []byte, at uint32, val byte) {
		file = append([]byte(nil), file...)
		if len(file) > 0 {
			file[int(at)%len(file)] ^= val
		}
		p := filepath.Join(t.TempDir(), "in.db")
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := storage.CheckSnapshot(p); err != nil {
			return
		}
		st, err := storage.OpenBolt(p)
		if err != nil {
			t.Fatalf("CheckSnapshot accepted a file OpenBolt refuses: %v", err)
		}
		st.Close()
	})
}
