package oidcprovider

import (
	"testing"
	"time"

	"wxlogin/login"
)

func TestSessionSatisfies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	age := func(s uint) *uint { return &s }
	for _, tc := range []struct {
		name    string
		prompt  []string
		maxAge  *uint
		session time.Time // when the session was made
		now     time.Time
		want    bool
	}{
		{"older session, no constraint", nil, nil, t0.Add(-time.Hour), t0, true},
		{"older session, prompt=login", []string{"login"}, age(0), t0.Add(-time.Second), t0, false},
		{"session made for this request, prompt=login", []string{"login"}, age(0), t0.Add(time.Second), t0.Add(2 * time.Second), true},
		{"within max_age", nil, age(60), t0.Add(-30 * time.Second), t0, true},
		{"beyond max_age", nil, age(60), t0.Add(-61 * time.Second), t0, false},
		{"max_age=0, session made for this request", nil, age(0), t0, t0.Add(time.Minute), true},
		{"prompt=none, older session", []string{"none"}, nil, t0.Add(-time.Hour), t0, true},
	} {
		a := &authRequest{CreatedAt: t0, Prompt: tc.prompt, MaxAge: tc.maxAge}
		if got := a.sessionSatisfies(&login.Session{CreatedAt: tc.session}, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAccessTokenIDRoundTrip(t *testing.T) {
	s := &store{now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	for _, tc := range []struct {
		scopes []string
		want   claims
	}{
		{[]string{"openid"}, claims{}},
		{[]string{"openid", "profile"}, claims{profile: true}},
		{[]string{"openid", "unionid"}, claims{unionID: true}},
		{[]string{"openid", "profile", "unionid"}, claims{profile: true, unionID: true}},
	} {
		id, exp, err := s.CreateAccessToken(t.Context(), &authRequest{OpenID: "oABC:def", Scopes: tc.scopes})
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseAccessTokenID(id)
		if err != nil || got.openID != "oABC:def" || got.claims != tc.want || !got.expires.Equal(exp.Truncate(time.Second)) {
			t.Fatalf("%v: %q → %+v %v (exp %v)", tc.scopes, id, got, err, exp)
		}
	}
	for _, bad := range []string{"", "1.p.x", "x.p.b2s.r", "1.p.!!.r", "1.p..r"} {
		if _, err := parseAccessTokenID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
