package storage_test

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"wxlogin/storage"
)

// TestBoltKeptOverReopen: what Keep stores survives closing the file and is
// handed out once; nil stores nothing and leaves the file as it was.
func TestBoltKeptOverReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kept.db")
	st, err := storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Keep("nothing", nil); err != nil {
		t.Fatal(err)
	}
	_ = st.DB().View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("kept")) != nil {
			t.Error("Keep(nil) created a bucket")
		}
		return nil
	})
	if err := st.Keep("state", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = storage.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.TakeKept("state")
	if err != nil || string(got) != "hello" {
		t.Fatalf("TakeKept after reopening: %q %v", got, err)
	}
	if again, err := st.TakeKept("state"); err != nil || again != nil {
		t.Fatalf("TakeKept a second time: %q %v", again, err)
	}
	_ = st.DB().View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("kept")) != nil {
			t.Error("the emptied kept bucket is still there")
		}
		return nil
	})
}
