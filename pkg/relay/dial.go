package relay

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errRefusedAddress is a dial to an address the relay never connects to.
var errRefusedAddress = errors.New("relay: the upstream's address is loopback, private, link-local or otherwise not public")

// notPublic are the ranges beyond netip's predicates that are no public upstream: this network,
// carrier-grade NAT, IETF protocol assignments, benchmarking, NAT64 (may embed a private IPv4),
// documentation and 6to4/Teredo relays; and the IPv6 forms netip does not see through: the
// IPv4-compatible ::/96 (::127.0.0.1) and IPv4-translated ::ffff:0:0:0/96 (neither is Unmap'd),
// the deprecated site-local fec0::/10 (still routed inside some networks) and discard 100::/64.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("::/96"), netip.MustParsePrefix("::ffff:0:0:0/96"), netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"), netip.MustParsePrefix("2001::/32"), netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// publicAddr says whether the relay may connect to ip. dev admits loopback too.
func publicAddr(ip netip.Addr, dev bool) bool {
	ip = ip.Unmap()
	if dev && ip.IsLoopback() {
		return true
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// control runs on every connection the transport makes, with the address actually dialled
// (after DNS), so a name that resolves, or re-resolves, to an internal address is refused.
func control(dev bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !publicAddr(ap.Addr(), dev) {
			return errRefusedAddress
		}
		return nil
	}
}

// newTransport is the relay's only way out: no proxy from the environment (it would be the
// connected address instead of the upstream), every dial checked, TLS verified, no
// decompression (the body is searched as it comes).
func newTransport(dev bool, headerTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: control(dev)}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
}
