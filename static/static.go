// Package static holds the demo page and the JavaScript client, embedded
// into the binary.
package static

import "embed"

// Files are the page (index.html), the client (qrlogin.js), their assets and
// the OpenID Connect demo's relying party (oidc-demo.js).
//
//go:embed index.html qrlogin.js demo.js demo.css oidc-demo.js
var Files embed.FS
