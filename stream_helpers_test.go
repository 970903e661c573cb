package main

// Shared helpers for the end-to-end tests: the two ways a page waits for a
// login, an SSE stream and polling (plain and long), as real HTTP clients.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"wxlogin/internal/ssetest"
)

// pollScene reads a scene's current view once.
func pollScene(t testing.TB, base string, sc sceneInfo) statusView {
	t.Helper()
	var v statusView
	if r := apiCall(t, http.MethodGet, base+"/api/v1/login/scenes/"+sc.SceneID, sc.Secret, nil, &v); r.StatusCode != http.StatusOK {
		t.Fatalf("poll %s on %s: %d", sc.SceneID, base, r.StatusCode)
	}
	return v
}

// longPollAsync starts GET ?wait=secs and delivers its answer.
func longPollAsync(t *testing.T, base string, sc sceneInfo, secs int) <-chan secView {
	out := make(chan secView, 1)
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/login/scenes/"+sc.SceneID+"?wait="+strconv.Itoa(secs), nil)
	req.Header.Set("Authorization", "Bearer "+sc.Secret)
	go func() {
		var v secView
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				v.Status = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
			} else if err := json.Unmarshal(b, &v); err != nil {
				v.Status = "undecodable: " + string(b)
			}
		} else {
			v.Status = "error: " + err.Error()
		}
		out <- v
	}()
	return out
}

// sseEvent is one parsed server-sent event (Data is empty for a bare retry hint).
type sseEvent = ssetest.Event

// sseStream is a real SSE client reading one stream.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
}

// openStream connects to a scene's event stream with the secret as Bearer.
func openStream(t testing.TB, base, sceneID, secret, lastEventID string) (*sseStream, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/login/scenes/"+sceneID+"/events", nil)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp
	}
	s := &sseStream{resp: resp, events: make(chan sseEvent, 16), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return s, resp
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.events)
	rd := ssetest.NewReader(s.resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			return
		}
		s.events <- ev
	}
}

// Next returns the next event carrying data, or fails after timeout.
func (s *sseStream) Next(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended while waiting for an event")
			}
			if ev.Data == "" {
				continue // a bare retry hint
			}
			return ev
		case <-time.After(timeout):
			t.Fatalf("no event within %s", timeout)
		}
	}
}

// WaitClosed fails unless the server ends the stream within timeout.
func (s *sseStream) WaitClosed(t testing.TB, timeout time.Duration) {
	t.Helper()
	timer := time.After(timeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timer:
			t.Fatalf("stream still open after %s", timeout)
		}
	}
}

func (s *sseStream) Close() {
	s.resp.Body.Close()
	<-s.done
}

// NextAny returns the next event, bare retry hints included (Next skips them).
func (s *sseStream) NextAny(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatalf("stream ended while waiting for an event")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
	}
	return sseEvent{}
}
