package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// The address check as the AWS function runs it (Dev false), on the addresses an attacker's DNS
// name can resolve to: every one that is not a public unicast address is refused, however it is
// written (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo); the public
// neighbours of each refused range are allowed, so the table cannot pass by refusing everything.
func TestHostile2AddressTable(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "::ffff:0:127.0.0.1",
		"0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "::ffff:10.0.0.1", "::10.0.0.1", "::ffff:0:10.0.0.1",
		"169.254.169.254", "::ffff:169.254.169.254", "::169.254.169.254", "fe80::1", "febf::1",
		"fc00::1", "fd00:ec2::254", "fec0::1", "feff::1",
		"100.64.0.1", "100.127.255.255", "198.18.0.1", "198.19.255.255", "192.0.0.170", "192.0.2.1", "198.51.100.1", "203.0.113.1",
		"224.0.0.1", "239.255.255.250", "ff02::1", "ff05::1:3", "ff0e::1", "ff01::1",
		"240.0.0.1", "255.255.255.255",
		"64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:a00:1::1", "2001:0:a00:1::1", "2001:db8::1", "100::1",
	}
	public := []string{
		"8.8.8.8", "1.1.1.1", "::ffff:8.8.8.8", "100.63.255.255", "100.128.0.0", "198.17.255.255", "198.20.0.0",
		"11.0.0.1", "172.32.0.1", "192.169.0.1", "223.255.255.255", "2606:4700:4700::1111", "2a00:1450:4001::1",
	}
	for _, s := range refused {
		if publicAddr(netip.MustParseAddr(s), false) {
			t.Errorf("%s: allowed, want refused", s)
		}
		if err := control(false)("tcp", netip.AddrPortFrom(netip.MustParseAddr(s), 443).String(), nil); !errors.Is(err, errRefusedAddress) {
			t.Errorf("dial %s: %v, want refused", s, err)
		}
	}
	for _, s := range public {
		if !publicAddr(netip.MustParseAddr(s), false) {
			t.Errorf("%s: refused, want allowed", s)
		}
	}
	// Dev admits loopback only, in any spelling, and nothing else that is not public.
	for s, want := range map[string]bool{"127.0.0.1": true, "::1": true, "::ffff:127.0.0.1": true, "10.0.0.1": false, "169.254.169.254": false, "0.0.0.0": false} {
		if got := publicAddr(netip.MustParseAddr(s), true); got != want {
			t.Errorf("dev %s: %v, want %v", s, got, want)
		}
	}
	if err := control(false)("tcp", "localhost:443", nil); !errors.Is(err, errRefusedAddress) {
		t.Errorf("an unparsable dialled address: %v", err)
	}
}

// A name that resolves to several internal addresses (localhost: 127.0.0.1 and ::1) is refused on
// each one the dialler tries: the transport the AWS function uses never connects.
func TestHostile2NameWithSeveralInternalAddresses(t *testing.T) {
	var reached atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	tr := newTransport(false, 5*time.Second)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://localhost:"+u.Port()+"/", nil)
	res, err := tr.RoundTrip(req)
	if err == nil {
		res.Body.Close()
	}
	if !errors.Is(err, errRefusedAddress) || reached.Load() != 0 {
		t.Fatalf("dial of localhost: %v, server reached %d times", err, reached.Load())
	}
}
