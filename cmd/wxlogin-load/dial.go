package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// sourceDialer spreads outgoing connections over several loopback source
// addresses (127.0.0.1 … 127.0.0.N), so that thousands of streams plus the
// churn of short requests never exhaust one address's ephemeral ports.
type sourceDialer struct {
	next  atomic.Uint32
	addrs []*net.TCPAddr
}

func newSourceDialer(n int) *sourceDialer {
	d := &sourceDialer{}
	for i := 1; i <= max(n, 1); i++ {
		d.addrs = append(d.addrs, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))})
	}
	return d
}

func (d *sourceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	src := d.addrs[int(d.next.Add(1))%len(d.addrs)]
	nd := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, src.IP, err)
	}
	return c, nil
}

// httpClient is a keep-alive client for short requests (scene creation,
// callbacks, polls) with up to conns connections to the server.
func (d *sourceDialer) httpClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
}

// raiseFileLimit lifts the soft open-file limit to the hard one (20 000 on
// the development machine); children inherit it. It returns the new limit.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read open-file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise open-file limit: %w", err)
	}
	return lim.Cur, nil
}
