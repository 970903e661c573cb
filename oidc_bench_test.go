package main

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"wxlogin/internal/redistest"
)

// BenchmarkOIDCTokenEndpoint measures the token endpoint: code exchange with
// the client secret, PKCE check, the code taken from the store, the ID token
// signed (RS256) and the auth request deleted. The codes are made beforehand
// (single sign-on, timer stopped); b.N exchanges then run from 16 goroutines.
// It reports requests per second and the p99 latency.
//
//	go test -run '^$' -bench OIDCTokenEndpoint -benchtime 400x .
func BenchmarkOIDCTokenEndpoint(b *testing.B) {
	for _, backend := range []string{"bolt", "redis"} {
		b.Run(backend, func(b *testing.B) {
			env := map[string]string{}
			if backend == "redis" {
				env["WXLOGIN_REDIS_URL"] = redistest.URL
				env["WXLOGIN_REDIS_PREFIX"] = redistest.Prefix(b, redistest.Client(b, redistest.URL))
			}
			benchTokenEndpoint(b, env)
		})
	}
}

func benchTokenEndpoint(b *testing.B, env map[string]string) {
	addr := freeLoopbackAddr(b)
	full := map[string]string{"WXLOGIN_ADDR": addr, "WXLOGIN_PUBLIC_URL": "http://" + addr,
		"WXLOGIN_OIDC_CLIENTS": writeClientFile(b), "WXLOGIN_SCENE_RATE": "0", "WXLOGIN_LOG_FORMAT": "json"}
	for k, v := range env {
		full[k] = v
	}
	srv := startTestServer(b, full)
	rp := newRP(b, srv.URL, rpConfidentialID, rpConfidentialSecret, rpConfidentialURI)
	br := newBrowser(b)
	first := rp.start()
	br.authorize(first.URL)
	br.scanAndExchange(srv.URL, srv.URL, "oOIDC_bench_user_00000000001")

	type pending struct {
		req  authRequest
		code string
	}
	codes := make([]pending, b.N)
	for i := range codes {
		a := rp.start()
		codes[i] = pending{a, br.redirected(a.URL, rpConfidentialURI).Get("code")}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	latencies := make([]time.Duration, b.N)
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				next.Lock()
				n := i
				i++
				next.Unlock()
				if n >= len(codes) {
					return
				}
				t0 := time.Now()
				if _, err := rp.oauth.Exchange(ctx, codes[n].code, oauth2.VerifierOption(codes[n].req.Verifier)); err != nil {
					b.Errorf("exchange: %v", err)
					return
				}
				latencies[n] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
}
