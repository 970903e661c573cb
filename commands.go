package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
)

// command is a subcommand of the binary: an operator's tool that runs once
// and exits (the service itself is the binary without one).
type command struct {
	summary string
	run     func(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error
}

var commands = map[string]command{
	"backup":  {"copy a running service's database to a file (online)", runBackup},
	"restore": {"put a backup in place of a stopped service's database", runRestore},
	"migrate": {"copy users and sessions between bbolt and Redis", runMigrate},
}

// dispatch runs the subcommand args name, or the service when they name none.
// -h prints a subcommand's usage and succeeds.
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return run(ctx, args, getenv, stdout)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return run(ctx, args, getenv, stdout)
	}
	fs := flag.NewFlagSet("wxlogin "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	err := cmd.run(ctx, fs, args[1:], getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

// usage sets a subcommand's -h text: a synopsis, what it does, then its flags.
func usage(fs *flag.FlagSet, synopsis, text string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n", synopsis, strings.TrimSpace(text))
		if hasFlags(fs) {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseArgs parses flags, before or after the positional arguments, and
// wants exactly nArgs of those.
func parseArgs(fs *flag.FlagSet, args []string, nArgs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != nArgs {
		fs.Usage()
		return nil, fmt.Errorf("want %d argument(s), got %d: %q", nArgs, len(pos), pos)
	}
	return pos, nil
}

// localURL is how a tool on the service's machine reaches it: WXLOGIN_ADDR
// with an unspecified host made loopback.
func localURL(getenv func(string) string) string {
	addr := strings.TrimSpace(getenv("WXLOGIN_ADDR"))
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
