package handlers

import (
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"
)

// pageCSP allows only our own scripts, styles and images: the page never
// runs inline or third-party code, and nobody may frame it (clickjacking a
// login page is an attack).
const pageCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// registerStatic serves the demo page at / and the client files under /static/.
func registerStatic(e *echo.Echo, files fs.FS, demo bool) {
	e.GET("/", func(c echo.Context) error {
		page, err := fs.ReadFile(files, "index.html")
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		return c.HTMLBlob(http.StatusOK, page)
	})
	fileServer := http.StripPrefix("/static/", http.FileServer(http.FS(files)))
	e.GET("/static/*", func(c echo.Context) error {
		// Short cache with revalidation: a new release reaches browsers
		// within minutes, and unchanged files cost a 304.
		c.Response().Header().Set("Cache-Control", "public, max-age=300, must-revalidate")
		fileServer.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}
