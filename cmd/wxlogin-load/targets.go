package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"wxlogin/handlers"
	"wxlogin/login"
	"wxlogin/wechat"
)

// wxloginTarget drives the real service: POST a scene, stream its events
// with the secret, and act as WeChat with a signed SCAN callback.
type wxloginTarget struct {
	base  string // http://127.0.0.1:PORT
	hc    *http.Client
	sim   *wechat.Simulator
	users []string // openids that scan; their counts go up
}

func newWxloginTarget(base, token string, hc *http.Client, users int) *wxloginTarget {
	t := &wxloginTarget{base: base, hc: hc,
		sim: &wechat.Simulator{URL: base + "/wechat/callback", Token: token, Client: hc}}
	for i := range max(users, 1) {
		t.users = append(t.users, fmt.Sprintf("oLOAD_%06d_%s", i, wechat.RandomOpenID()[1:12]))
	}
	return t
}

func (t *wxloginTarget) initial() bool { return true }
func (t *wxloginTarget) ends() bool    { return true }

func (t *wxloginTarget) prepare(ctx context.Context) (*waiter, error) {
	sc, err := t.createScene(ctx)
	if err != nil {
		return nil, err
	}
	return &waiter{
		ID: sc.SceneID, Secret: sc.Secret,
		Path:   "/api/v1/login/scenes/" + sc.SceneID + "/events",
		Header: http.Header{"Authorization": {"Bearer " + sc.Secret}},
	}, nil
}

func (t *wxloginTarget) createScene(ctx context.Context) (*handlers.SceneCreated, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/api/v1/login/scenes", nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("create scene: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("create scene: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("create scene: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var sc handlers.SceneCreated
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, fmt.Errorf("create scene: %w", err)
	}
	return &sc, nil
}

// fire sends the signed SCAN callback and checks WeChat's reply: a scan is
// answered only after it is committed, with the user's new count.
func (t *wxloginTarget) fire(ctx context.Context, tr *trigger) error {
	openID := t.users[int(tr.seq)%len(t.users)]
	r, err := t.sim.Send(ctx, wechat.ScanEvent(tr.w.ID, openID, false, time.Now()))
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK || !strings.Contains(r.Text, "登录成功") {
		return fmt.Errorf("callback for %s answered %d %q", tr.w.ID, r.Status, r.Body)
	}
	return nil
}

func (t *wxloginTarget) check(tr *trigger, ev sseEvent) error {
	var v login.View
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		return fmt.Errorf("event data: %w", err)
	}
	switch {
	case ev.Event != string(login.StatusConfirmed) || v.Status != login.StatusConfirmed:
		return fmt.Errorf("scene %s: event %q status %q, want confirmed", tr.w.ID, ev.Event, v.Status)
	case ev.ID != "2":
		return fmt.Errorf("scene %s: confirmed event id %q, want 2", tr.w.ID, ev.ID)
	case v.Code != login.CodeFor(tr.w.Secret, tr.w.ID):
		return fmt.Errorf("scene %s: wrong or missing one-time code", tr.w.ID)
	case v.User == nil || v.User.LoginCount < 1:
		return fmt.Errorf("scene %s: confirmed event without the user", tr.w.ID)
	}
	return nil
}

// sseBaselineTarget drives the bare r3labs/sse server: a stream per waiter,
// publishes by HTTP. Streams stay open after an event (no churn), which
// favours the baseline.
type sseBaselineTarget struct {
	base string
	hc   *http.Client
}

func (t *sseBaselineTarget) initial() bool { return false }
func (t *sseBaselineTarget) ends() bool    { return false }

func (t *sseBaselineTarget) prepare(ctx context.Context) (*waiter, error) {
	id := wechat.RandomOpenID()[1:23]
	return &waiter{ID: id, Path: "/events?stream=" + url.QueryEscape(id)}, nil
}

func (t *sseBaselineTarget) fire(ctx context.Context, tr *trigger) error {
	seq := strconv.FormatInt(tr.seq, 10)
	data := `{"scene_id":"` + tr.w.ID + `","status":"confirmed","seq":` + seq + `}`
	u := t.base + "/publish?" + url.Values{"stream": {tr.w.ID}, "id": {seq}, "data": {data}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("publish answered %d", resp.StatusCode)
	}
	return nil
}

// check matches the sequence number in the data: with AutoReplay on (the
// default) the library replaces the event id with its log index.
func (t *sseBaselineTarget) check(tr *trigger, ev sseEvent) error {
	var d struct {
		Seq int64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Seq != tr.seq {
		return fmt.Errorf("stream %s: event %s, want seq %d", tr.w.ID, ev.Data, tr.seq)
	}
	return nil
}
