package handlers

import (
	"errors"
	"net/url"
	"strings"
)

// maxReturnTo bounds return_to (it is kept with the state and put in a Location).
const maxReturnTo = 2048

var errReturnTo = errors.New("return_to must be a path on this site (such as /account) or an https URL on an allowed origin")

// checkReturnTo decides where a browser may be sent back to after WeChat's
// authorisation: a path on wxlogin's own origin, or an absolute URL on self
// (wxlogin's origin) or on an origin in allowed (WXLOGIN_ALLOWED_ORIGINS).
// Anything else is refused — never an open redirect. It returns the address
// re-serialised, as it will go into the Location header.
//
// Browsers are generous readers of a Location: "//evil.example" and
// "/\evil.example" are other hosts, tabs and newlines are dropped, "\" is
// "/" in http(s) URLs. So: printable ASCII only, no backslash at all, a path
// must not start with two slashes, an absolute URL must be http(s) with a
// host and no userinfo, and the result is checked again after re-serialising.
func checkReturnTo(raw, self string, allowed []string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if len(raw) > maxReturnTo {
		return "", errReturnTo
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "", errReturnTo
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "", errReturnTo
	}
	var out string
	switch {
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(raw, "/") && !strings.HasPrefix(raw, "//"):
		out = u.String()
		if !isLocalPath(out) {
			return "", errReturnTo
		}
	case (u.Scheme == "https" || u.Scheme == "http") && u.Host != "":
		if !originAllowed(originOf(u), self, allowed) {
			return "", errReturnTo
		}
		out = u.String()
		// The re-serialised form must name the same origin.
		again, err := url.Parse(out)
		if err != nil || again.User != nil || originOf(again) != originOf(u) {
			return "", errReturnTo
		}
	default:
		return "", errReturnTo
	}
	if len(out) > maxReturnTo {
		return "", errReturnTo
	}
	return out, nil
}

// isLocalPath reports whether a Location stays on the origin it is served from.
func isLocalPath(s string) bool {
	return strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") && !strings.HasPrefix(s, "/\\") &&
		!strings.ContainsAny(s, "\\\t\r\n")
}

// originOf is scheme://host[:port] in lower case, without the scheme's default port.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// originAllowed compares origins after normalising both sides.
func originAllowed(origin, self string, allowed []string) bool {
	for _, o := range append([]string{self}, allowed...) {
		if u, err := url.Parse(o); err == nil && u.Host != "" && originOf(u) == origin {
			return true
		}
	}
	return false
}
