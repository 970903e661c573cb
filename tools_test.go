package main

// wxlogin backup, restore and migrate as an operator runs them: the built
// binary as a child process, checked by its exit status and messages,
// against a running service (in this process) and real bbolt files and Redis.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wxlogin/storage"
	"wxlogin/wechat"
)

type toolResult struct {
	stdout, stderr string
	code           int
}

// runTool runs the binary with args and only the environment given (plus
// PATH), as a cron job would.
func runTool(t *testing.T, bin string, env map[string]string, args ...string) toolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := toolResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	return res
}

func (r toolResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

func wantToolFailure(t *testing.T, r toolResult, message string) {
	t.Helper()
	if r.code == 0 || !strings.Contains(r.stderr, message) {
		t.Fatalf("want a non-zero exit saying %q, got %s", message, r)
	}
}

func TestOperatorTools(t *testing.T) {
	bin := buildWxlogin(t)
	t.Run("Help", func(t *testing.T) { testToolHelp(t, bin) })
	t.Run("BadUsage", func(t *testing.T) { testToolBadUsage(t, bin) })
	t.Run("BackupUnderLoadThenRestore", func(t *testing.T) { testBackupUnderLoad(t, bin) })
	t.Run("BackupRefusals", func(t *testing.T) { testBackupRefusals(t, bin) })
	t.Run("RestoreRefusals", func(t *testing.T) { testRestoreRefusals(t, bin) })
	t.Run("MigrateBothWays", func(t *testing.T) { testMigrate(t, bin) })
}

func testToolHelp(t *testing.T, bin string) {
	for _, cmd := range []string{"backup", "restore", "migrate"} {
		r := runTool(t, bin, nil, cmd, "-h")
		if r.code != 0 || !strings.Contains(r.stderr, "usage: wxlogin "+cmd) {
			t.Fatalf("%s -h: %s", cmd, r)
		}
	}
}

func testToolBadUsage(t *testing.T, bin string) {
	dir := t.TempDir()
	wantToolFailure(t, runTool(t, bin, nil, "backup"), "wxlogin: backup: -o FILE is required")
	wantToolFailure(t, runTool(t, bin, nil, "backup", "-o", filepath.Join(dir, "b.db")), "WXLOGIN_ADMIN_TOKEN is not set")
	wantToolFailure(t, runTool(t, bin, nil, "backup", "-nope"), "flag provided but not defined: -nope")
	wantToolFailure(t, runTool(t, bin, nil, "restore"), "want 1 argument(s), got 0")
	wantToolFailure(t, runTool(t, bin, nil, "migrate", "-from", "mysql://x", "-to", "bbolt:"+filepath.Join(dir, "m.db")), "want bbolt:PATH or a redis:// URL")
	wantToolFailure(t, runTool(t, bin, nil, "migrate", "-from", "bbolt:"+filepath.Join(dir, "none.db"), "-to", "bbolt:"+filepath.Join(dir, "m.db")), "no such file")
	wantToolFailure(t, runTool(t, bin, nil, "migrate", "-to", "bbolt:x"), "-from and -to are required")
}

// loadUser logs one person in again and again through the real API,
// recording how many logins were acknowledged and how many were started.
type loadUser struct {
	openID       string
	acked, begun atomic.Int64
}

func (u *loadUser) run(ctx context.Context, base string, sim *wechat.Simulator) error {
	for ctx.Err() == nil {
		resp, err := http.Post(base+"/api/v1/login/scenes", "application/json", nil)
		if err != nil {
			return err
		}
		var sc sceneInfo
		err = json.NewDecoder(resp.Body).Decode(&sc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("create scene: %d %v", resp.StatusCode, err)
		}
		u.begun.Add(1)
		reply, err := sim.Send(context.Background(), wechat.ScanEvent(sc.SceneID, u.openID, false, time.Now()))
		if err != nil {
			return err
		}
		m := countInReply.FindStringSubmatch(reply.Text)
		if m == nil {
			return fmt.Errorf("scan reply %q has no count", reply.Text)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		if want := u.acked.Load() + 1; n != want {
			return fmt.Errorf("%s: login %d acknowledged as number %d", u.openID, want, n)
		}
		u.acked.Store(n)
	}
	return nil
}

// testBackupUnderLoad takes backups with `wxlogin backup` while people log
// in, restores each with `wxlogin restore`, and checks every count: at least
// what was acknowledged before the backup began, at most what had begun
// when it ended, and bbolt's consistency check clean.
func testBackupUnderLoad(t *testing.T, bin string) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken, "WXLOGIN_SCENE_RATE": "0"})
	sim := &wechat.Simulator{URL: srv.URL + "/wechat/callback", Token: "test-callback-token", AppID: demoAppID}
	users := make([]*loadUser, 6)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i := range users {
		users[i] = &loadUser{openID: fmt.Sprintf("oBackupLoad_%022d", i)}
		wg.Go(func() {
			if err := users[i].run(ctx, srv.URL, sim); err != nil {
				errs <- err
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	waitFor(t, 10*time.Second, "logins under way", func() bool {
		for _, u := range users {
			if u.acked.Load() < 3 {
				return false
			}
		}
		return true
	})

	dir := t.TempDir()
	env := map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken}
	for round := range 3 {
		file := filepath.Join(dir, fmt.Sprintf("backup-%d.db", round))
		before := make([]int64, len(users))
		for i, u := range users {
			before[i] = u.acked.Load()
		}
		r := runTool(t, bin, env, "backup", "-o", file, "-url", srv.URL)
		after := make([]int64, len(users))
		for i, u := range users {
			after[i] = u.begun.Load()
		}
		if r.code != 0 || !strings.Contains(r.stdout, "wrote "+file) {
			t.Fatalf("backup: %s", r)
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		checkBoltFile(t, file)

		target := filepath.Join(dir, fmt.Sprintf("restored-%d.db", round))
		if r := runTool(t, bin, nil, "restore", "-db", target, file); r.code != 0 || !strings.Contains(r.stdout, "restored") {
			t.Fatalf("restore: %s", r)
		}
		st, err := storage.OpenBolt(target)
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range users {
			got, err := st.User(context.Background(), u.openID)
			if err != nil {
				t.Fatalf("round %d: %s missing from the backup: %v", round, u.openID, err)
			}
			if i == 0 {
				t.Logf("round %d: %s: %d acknowledged before, %d in the backup, %d begun by its end", round, u.openID, before[i], got.LoginCount, after[i])
			}
			if got.LoginCount < before[i] || got.LoginCount > after[i] {
				t.Errorf("round %d: %s has %d logins in the backup; %d were acknowledged before it began, %d begun by its end",
					round, u.openID, got.LoginCount, before[i], after[i])
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBoltFile runs bbolt's consistency check on a file.
func checkBoltFile(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s fails tx.Check: %v", path, err)
	}
}

func testBackupRefusals(t *testing.T, bin string) {
	srv := startTestServer(t, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken})
	file := filepath.Join(t.TempDir(), "b.db")
	wantToolFailure(t, runTool(t, bin, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken + "-wrong"}, "backup", "-o", file, "-url", srv.URL),
		"401 Unauthorized")
	wantToolFailure(t, runTool(t, bin, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken}, "backup", "-o", file, "-url", "http://"+freeLoopbackAddr(t)),
		"reach the service")
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed backup left %s: %v", file, err)
	}
	// WXLOGIN_ADDR finds a service on this machine without -url.
	addr := strings.TrimPrefix(srv.URL, "http://")
	r := runTool(t, bin, map[string]string{"WXLOGIN_ADMIN_TOKEN": testAdminToken, "WXLOGIN_ADDR": addr}, "backup", "-o", file)
	if r.code != 0 {
		t.Fatalf("backup via WXLOGIN_ADDR: %s", r)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func testRestoreRefusals(t *testing.T, bin string) {
	dir := t.TempDir()
	target := filepath.Join(dir, "wxlogin.db")
	srv := startTestServer(t, map[string]string{"WXLOGIN_DB": target})
	loginAs(t, srv, "oRestore_person_000000000001")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	sum := fileSum(t, target)

	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 1000), 0o600)
	wantToolFailure(t, runTool(t, bin, nil, "restore", "-db", target, junk), "is not a bbolt database")

	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("invoices")); return err })
	db.Close()
	wantToolFailure(t, runTool(t, bin, nil, "restore", "-db", target, foreign), "not wxlogin's")

	newer := filepath.Join(dir, "newer.db")
	copyFile(t, target, newer)
	db, err = bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte{0, 0, 0, 0, 0, 0, 0, storage.FormatVersion + 1})
	})
	db.Close()
	wantToolFailure(t, runTool(t, bin, nil, "restore", "-db", target, newer), "written by a newer wxlogin")
	wantToolFailure(t, runTool(t, bin, nil, "restore", "-db", target, filepath.Join(dir, "missing.db")), "no such file")

	if fileSum(t, target) != sum {
		t.Fatal("a refused restore changed the database")
	}

	// A running service holds the file: refused, nothing changed.
	good := filepath.Join(dir, "good.db")
	copyFile(t, target, good)
	srv = startTestServer(t, map[string]string{"WXLOGIN_DB": target})
	wantToolFailure(t, runTool(t, bin, nil, "restore", "-db", target, good), "is wxlogin running? stop it first")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stopped: the restore goes through and keeps the old file aside.
	r := runTool(t, bin, nil, "restore", "-db", target, good)
	if r.code != 0 || !strings.Contains(r.stdout, "kept the previous "+target+".before-restore-") {
		t.Fatalf("restore of a good file: %s", r)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testMigrate moves a bbolt service's users and sessions to Redis and back,
// with logins in between continuing the counts and sessions still valid.
func testMigrate(t *testing.T, bin string) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first.db")
	prefix := newClusterPrefix(t, clusterRedis)
	const alice, bob = "oMigrate_alice_00000000001", "oMigrate_bob_000000000001"

	srv := startTestServer(t, map[string]string{"WXLOGIN_DB": first, "WXLOGIN_SCENE_RATE": "0"})
	for range 2 {
		loginAs(t, srv, alice)
	}
	aliceTok := loginAs(t, srv, alice)
	loginAs(t, srv, bob)
	// A running service's file is refused.
	wantToolFailure(t, runTool(t, bin, nil, "migrate", "-from", "bbolt:"+first, "-to", clusterRedis, "-to-prefix", prefix), "locked")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	toRedis := []string{"migrate", "-from", "bbolt:" + first, "-to", clusterRedis, "-to-prefix", prefix}
	r := runTool(t, bin, nil, toRedis...)
	if r.code != 0 || !strings.Contains(r.stdout, "moved 2 users (0 already") || !strings.Contains(r.stdout, "and 4 sessions") {
		t.Fatalf("migrate to Redis: %s", r)
	}
	wantToolFailure(t, runTool(t, bin, nil, toRedis...), "already holds users or sessions; add -force")
	r = runTool(t, bin, nil, append(toRedis, "-force")...)
	if r.code != 0 || !strings.Contains(r.stdout, "moved 0 users (2 already") || !strings.Contains(r.stdout, "and 0 sessions (4 already") {
		t.Fatalf("migrate again with -force: %s", r)
	}

	onRedis := startTestServer(t, map[string]string{"WXLOGIN_REDIS_URL": clusterRedis, "WXLOGIN_REDIS_PREFIX": prefix, "WXLOGIN_SCENE_RATE": "0"})
	var me userBody
	if r := apiCall(t, http.MethodGet, onRedis.URL+"/api/v1/me", aliceTok.AccessToken, nil, &me); r.StatusCode != 200 || me.LoginCount != 3 || me.ID != aliceTok.User.ID {
		t.Fatalf("/me on Redis with a session from bbolt: %d %+v", r.StatusCode, me)
	}
	if tok := loginAs(t, onRedis, alice); tok.User.LoginCount != 4 || tok.User.ID != aliceTok.User.ID {
		t.Fatalf("login on Redis: %+v, want alice's 4th", tok.User)
	}
	if tok := loginAs(t, onRedis, bob); tok.User.LoginCount != 2 {
		t.Fatalf("login on Redis: %+v, want bob's 2nd", tok.User)
	}
	if err := onRedis.Stop(); err != nil {
		t.Fatal(err)
	}

	back := filepath.Join(dir, "back.db")
	r = runTool(t, bin, nil, "migrate", "-from", clusterRedis, "-from-prefix", prefix, "-to", "bbolt:"+back)
	if r.code != 0 || !strings.Contains(r.stdout, "moved 2 users (0 already") || !strings.Contains(r.stdout, "and 6 sessions") {
		t.Fatalf("migrate back to bbolt: %s", r)
	}
	onBolt := startTestServer(t, map[string]string{"WXLOGIN_DB": back, "WXLOGIN_SCENE_RATE": "0"})
	if r := apiCall(t, http.MethodGet, onBolt.URL+"/api/v1/me", aliceTok.AccessToken, nil, &me); r.StatusCode != 200 || me.LoginCount != 4 {
		t.Fatalf("/me on bbolt after the round trip: %d %+v", r.StatusCode, me)
	}
	if tok := loginAs(t, onBolt, alice); tok.User.LoginCount != 5 {
		t.Fatalf("login after the round trip: %+v, want alice's 5th", tok.User)
	}
	if err := onBolt.Stop(); err != nil {
		t.Fatal(err)
	}
	checkBoltFile(t, back)
}
