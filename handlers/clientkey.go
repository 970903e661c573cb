package handlers

import "net/netip"

// clientKey is what per-client limits (scene creation, open streams) count
// by: an IPv4 address, or the /64 an IPv6 address is in. One IPv6 subscriber
// is normally given a whole /64 and may use any address in it, so a limit
// per IPv6 address limits nothing.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip // not an address (Echo had nothing better): count it as given
	}
	addr = addr.Unmap() // ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
	if addr.Is4() {
		return addr.String()
	}
	prefix, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return prefix.String()
}
