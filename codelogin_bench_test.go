package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"wxlogin/wechat"
)

// BenchmarkCodeLoginsOverHTTP: signed WeChat text messages carrying login
// codes, posted in parallel to a real server on bbolt (every count durable
// before the answer), as WeChat delivers them. The scenes are made first.
func BenchmarkCodeLoginsOverHTTP(b *testing.B) {
	srv := startTestServer(b, map[string]string{"WXLOGIN_SCENE_RATE": "0", "WXLOGIN_QR_TTL": "600s"})
	sim := codeSimulator(srv, "")
	sim.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	codes := make([]string, b.N)
	for i := range codes {
		codes[i] = createCodeScene(b, srv.URL).LoginCode
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			openID := "oBench_" + strings.Repeat("0", 20) + string(rune('a'+i%26))
			r, err := sim.Send(context.Background(), wechat.TextMessage(openID, codes[i], msgIDs.Add(1), time.Now()))
			if err != nil || !strings.Contains(r.Text, "登录成功") {
				b.Errorf("code login: %+v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// BenchmarkForwardLatency: what passing through wxlogin adds to a message
// for the account's own handler (a local one that checks the signature and
// answers): the same signed messages sent one after another straight to the
// handler, then through wxlogin. Reports p50 and p99 of both.
func BenchmarkForwardLatency(b *testing.B) {
	_, siteSrv := newSiteHandler(b, "")
	srv := startTestServer(b, map[string]string{"WXLOGIN_FORWARD_URL": siteSrv.URL})
	measure := func(url string) []time.Duration {
		sim := &wechat.Simulator{URL: url, Token: clusterToken, AppID: demoAppID,
			Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
		out := make([]time.Duration, 0, b.N)
		for range b.N {
			req, err := sim.Request(context.Background(), wechat.TextMessage("oBenchForward_000000000000001", "menu", msgIDs.Add(1), time.Now()), time.Now())
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			r, err := sim.Do(req)
			out = append(out, time.Since(start))
			if err != nil || r.Status != http.StatusOK || !strings.HasPrefix(r.Text, "site saw") {
				b.Fatalf("%+v %v", r, err)
			}
		}
		slices.Sort(out)
		return out
	}
	b.ResetTimer()
	direct := measure(siteSrv.URL)
	via := measure(srv.URL + "/wechat/callback")
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds())
	}
	b.ReportMetric(pct(direct, .5), "direct-p50-µs")
	b.ReportMetric(pct(direct, .99), "direct-p99-µs")
	b.ReportMetric(pct(via, .5), "via-p50-µs")
	b.ReportMetric(pct(via, .99), "via-p99-µs")
}

// BenchmarkScanLoginsOverHTTP is BenchmarkCodeLoginsOverHTTP's baseline:
// the same harness with signed scans instead of codes.
func BenchmarkScanLoginsOverHTTP(b *testing.B) {
	srv := startTestServer(b, map[string]string{"WXLOGIN_SCENE_RATE": "0", "WXLOGIN_QR_TTL": "600s"})
	sim := codeSimulator(srv, "")
	sim.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = createCodeScene(b, srv.URL).SceneID
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			openID := "oBench_" + strings.Repeat("0", 20) + string(rune('a'+i%26))
			r, err := sim.Send(context.Background(), wechat.ScanEvent(ids[i], openID, false, time.Now()))
			if err != nil || !strings.Contains(r.Text, "登录成功") {
				b.Errorf("scan login: %+v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}
