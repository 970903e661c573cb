// Package static holds the demo page and the JavaScript client, embedded
// into the binary.
package static

import "embed"

// Files are the page (index.html), the client (qrlogin.js) and their assets.
//
//go:embed index.html qrlogin.js demo.js demo.css
var Files embed.FS
