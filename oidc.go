package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"wxlogin/login"
	"wxlogin/oidcprovider"
	"wxlogin/static"
	"wxlogin/storage"
)

// checkOIDCConfig validates the OpenID Connect settings: with a client file,
// WXLOGIN_PUBLIC_URL is the issuer and must be https outside loopback.
func checkOIDCConfig(c *config) []error {
	if c.OIDCClients == "" {
		return nil
	}
	if c.PublicURL == "" {
		return []error{errors.New("WXLOGIN_OIDC_CLIENTS needs WXLOGIN_PUBLIC_URL: it is the OpenID Connect issuer")}
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return nil // reported by the WXLOGIN_PUBLIC_URL check
	}
	if u.Scheme != "https" && !loopbackHost(u.Hostname()) {
		return []error{fmt.Errorf("WXLOGIN_PUBLIC_URL=%q: the OpenID Connect issuer must be https outside loopback", c.PublicURL)}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return []error{fmt.Errorf("WXLOGIN_PUBLIC_URL=%q: an OpenID Connect issuer has no query or fragment", c.PublicURL)}
	}
	return nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// oidcClients are the registered relying parties: the client file's, plus
// the demo client in demo mode. nil when the provider is off.
func oidcClients(cfg *config, issuer string) ([]oidcprovider.ClientConfig, error) {
	var clients []oidcprovider.ClientConfig
	if cfg.OIDCClients != "" {
		var err error
		if clients, err = oidcprovider.LoadClients(cfg.OIDCClients); err != nil {
			return nil, err
		}
	}
	if cfg.Demo() {
		for _, c := range clients {
			if c.ClientID == oidcprovider.DemoClientID {
				return nil, fmt.Errorf("WXLOGIN_OIDC_CLIENTS %s: client_id %q is the demo's own client", cfg.OIDCClients, c.ClientID)
			}
		}
		clients = append(clients, oidcprovider.DemoClient(issuer))
	}
	return clients, nil
}

// oidcRecords is where the provider keeps keys, auth requests and codes: the
// same bbolt file or Redis as everything else.
func oidcRecords(store login.Store, rdb *redis.Client, prefix string) (oidcprovider.Records, error) {
	if rdb != nil {
		return storage.NewOIDCRedis(rdb, prefix), nil
	}
	b, ok := store.(*storage.Bolt)
	if !ok {
		return nil, fmt.Errorf("OIDC: no record store for %T", store)
	}
	return storage.NewOIDCBolt(b)
}

// mountOIDC adds the OpenID Provider to e when clients are configured (always
// in demo mode). The issuer is WXLOGIN_PUBLIC_URL, or in demo mode without it
// the address this process listens on.
func mountOIDC(ctx context.Context, cfg *config, log *slog.Logger, e *echo.Echo, store login.Store, rdb *redis.Client,
	svc *login.Service, self string) (purge func(context.Context) (int, error), err error) {
	issuer := cfg.PublicURL
	if issuer == "" {
		issuer = self
	}
	clients, err := oidcClients(cfg, issuer)
	if err != nil || len(clients) == 0 {
		return nil, err
	}
	records, err := oidcRecords(store, rdb, cfg.RedisPrefix)
	if err != nil {
		return nil, err
	}
	demoPage, err := fs.ReadFile(static.Files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("OIDC login page: %w", err)
	}
	p, err := oidcprovider.New(ctx, oidcprovider.Config{
		Issuer: issuer, Clients: clients, DemoPage: demoPage, Records: records, Users: store,
		EndSession: svc.Logout, Log: log, AuthorizeRate: cfg.SceneRate, AllowInsecureIssuer: cfg.Demo(),
		KeysAtFirstUse: cfg.Demo(),
	})
	if err != nil {
		return nil, err
	}
	p.Register(e, cfg.Demo())
	log.Info("OpenID Connect provider on", "issuer", issuer, "clients", len(clients))
	return records.PurgeExpired, nil
}

// runOIDC runs `wxlogin oidc rotate-keys`.
func runOIDC(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error {
	usage(fs, "wxlogin oidc rotate-keys", `
Makes a new OpenID Connect signing key, which signs from now on (running
instances pick it up within a minute); the previous public key stays in the
JWKS until every token it signed has expired. Reads WXLOGIN_DB, or
WXLOGIN_REDIS_URL and WXLOGIN_REDIS_PREFIX. With bbolt stop the service
first (its file is locked while it runs); with Redis it works while the
cluster runs.`)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if pos[0] != "rotate-keys" {
		fs.Usage()
		return fmt.Errorf("unknown subcommand %q", pos[0])
	}
	cfg, err := loadConfig(nil, getenv, stdout)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogFormat, io.Discard)
	var store login.Store
	var rdb *redis.Client
	if cfg.RedisURL != "" {
		if rdb, err = storage.NewRedisClient(cfg.RedisURL); err != nil {
			return err
		}
		store = storage.NewRedis(rdb, cfg.RedisPrefix)
	} else if store, err = storage.OpenBolt(cfg.DB, storage.WithLogger(log)); err != nil {
		return err
	}
	defer store.Close()
	records, err := oidcRecords(store, rdb, cfg.RedisPrefix)
	if err != nil {
		return err
	}
	kid, err := oidcprovider.RotateKeys(ctx, records, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new OIDC signing key %s; the previous key stays published for %s\n", kid, oidcprovider.RetireAfter)
	return nil
}
