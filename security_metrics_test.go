package main

// Metric labels come from fixed sets. Invented HTTP
// methods are counted as method="other" and do not grow /metrics.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestInventedMethodsDoNotGrowMetrics(t *testing.T) {
	srv := startTestServer(t, nil)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			req, _ := http.NewRequest(fmt.Sprintf("INVENTED%05d", i), srv.URL+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	send(0, 10)
	base := len(metricsText(t, srv.URL))
	send(10, 510)
	text := metricsText(t, srv.URL)
	if strings.Contains(text, "INVENTED") {
		t.Fatal("an invented method became a label value")
	}
	if !strings.Contains(text, `method="other",route="/healthz"`) {
		t.Fatal(`no method="other" series for the invented methods`)
	}
	// Counters and timings change a few digits; 500 new series would add
	// hundreds of kilobytes.
	if grown := len(text) - base; grown > 2000 {
		t.Fatalf("/metrics grew by %d bytes over 500 invented methods", grown)
	}
}
