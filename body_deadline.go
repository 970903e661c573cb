package main

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// bodyDeadline gives every request that has a body d to deliver all of it.
// http.Server has no such setting: ReadTimeout would also cover the time a
// handler spends after the body (and cut streams), and ReadHeaderTimeout
// stops at the headers, so a body sent a byte a second held its connection
// (and a file descriptor) for as long as the client liked. Requests without
// a body — the SSE streams and long-polls among them — are left alone; once
// the whole body is in, the deadline is lifted, so a handler that then waits
// (for WeChat, for storage) is not cut short by it.
func bodyDeadline(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline when the body has been read to its end.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
