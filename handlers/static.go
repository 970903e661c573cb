package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// pageCSP allows only our own scripts, styles and images: the page never
// runs inline or third-party code, and nobody may frame it (clickjacking a
// login page is an attack).
const pageCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// staticFile is one embedded file, read once at start.
type staticFile struct {
	name string
	body []byte
	etag string
}

// registerStatic serves the demo page at / and the client files under /static/.
//
// Embedded files have no modification time, so http.FileServer would send no
// validator and a browser would download them again after every max-age. Each
// file gets a strong ETag from its content instead: revalidation costs a 304.
func registerStatic(e *echo.Echo, files fs.FS, demo bool) {
	byName := map[string]*staticFile{}
	_ = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(name, ".go") {
			return nil
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(body)
		byName[name] = &staticFile{name: name, body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})

	e.GET("/", func(c echo.Context) error {
		page := byName["index.html"]
		if page == nil {
			return echo.ErrNotFound
		}
		h := c.Response().Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		serveStatic(c, page)
		return nil
	})
	e.GET("/static/*", func(c echo.Context) error {
		f := byName[path.Clean(c.Param("*"))]
		if f == nil {
			return echo.ErrNotFound
		}
		h := c.Response().Header()
		// Short cache with revalidation: a new release reaches browsers
		// within minutes, and unchanged files cost a 304.
		h.Set("Cache-Control", "public, max-age=300, must-revalidate")
		// Other sites import qrlogin.js as a module, which needs CORS. The
		// files are public and fetched without credentials; the CORS
		// middleware's answer for allowed origins stands when it gave one.
		if h.Get("Access-Control-Allow-Origin") == "" {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		serveStatic(c, f)
		return nil
	})
}

// serveStatic answers with the file, or 304 when If-None-Match matches.
func serveStatic(c echo.Context, f *staticFile) {
	c.Response().Header().Set("ETag", f.etag)
	http.ServeContent(c.Response(), c.Request(), f.name, time.Time{}, bytes.NewReader(f.body))
}
