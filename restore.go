package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"wxlogin/storage"
)

func runRestore(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error {
	db := fs.String("db", firstNonEmpty(getenv("WXLOGIN_DB"), "./wxlogin.db"), "the service's database `file` (WXLOGIN_DB)")
	usage(fs, "wxlogin restore [-db PATH] BACKUP", `
Puts BACKUP (a file made by wxlogin backup) in place of the database of a
stopped wxlogin. BACKUP must be a wxlogin database of this version or older
and pass bbolt's consistency check. The database that was there, and its
journal, are kept beside it with the suffix .before-restore-<time>.
Refuses while the service runs (the database file is locked).`)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	src := pos[0]
	moved, err := storage.Restore(src, *db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", src, *db)
	for _, m := range moved {
		fmt.Fprintf(stdout, "kept the previous %s\n", m)
	}
	return nil
}
