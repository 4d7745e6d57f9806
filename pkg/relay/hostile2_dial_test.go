package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
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

// fakeDNS answers every A query for any name with addrs (and AAAA with none), over the stream
// framing Go's resolver uses on a connection that is not a PacketConn.
func fakeDNS(addrs ...netip.Addr) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			for {
				var n [2]byte
				if _, err := io.ReadFull(server, n[:]); err != nil {
					return
				}
				q := make([]byte, int(n[0])<<8|int(n[1]))
				if _, err := io.ReadFull(server, q); err != nil || len(q) < 12 {
					return
				}
				end := 12
				for end < len(q) && q[end] != 0 {
					end += int(q[end]) + 1
				}
				end += 5 // the root label, QTYPE, QCLASS
				if end > len(q) {
					return
				}
				qtype := int(q[end-4])<<8 | int(q[end-3])
				var answers [][]byte
				for _, a := range addrs {
					if qtype == 1 && a.Is4() {
						b := a.As4()
						answers = append(answers, append([]byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4}, b[:]...))
					}
				}
				msg := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, byte(len(answers)), 0, 0, 0, 0}, q[12:end]...)
				for _, a := range answers {
					msg = append(msg, a...)
				}
				if _, err := server.Write(append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)); err != nil {
					return
				}
			}
		}()
		return client, nil
	}
}

// A name that resolves to a private and a public address (a DNS answer an attacker controls):
// the dialler the relay's transport is built on tries each, and the check refuses the private one
// on the address actually dialled, so nothing connects to it; the public one is let through (here
// it need not answer).
func TestHostile2NameWithAPrivateAndAPublicAddress(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]error{}
	check := control(false)
	d := &net.Dialer{Timeout: 2 * time.Second, Resolver: &net.Resolver{PreferGo: true, Dial: fakeDNS(netip.MustParseAddr("10.0.0.7"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("8.8.8.8"))},
		Control: func(network, address string, c syscall.RawConn) error {
			err := check(network, address, c)
			mu.Lock()
			seen[address] = err
			mu.Unlock()
			if err == nil {
				return errors.New("test: a public address, not dialled further")
			}
			return err
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if conn, err := d.DialContext(ctx, "tcp4", "mixed.example:443"); err == nil {
		conn.Close()
		t.Fatal("connected")
	}
	mu.Lock()
	defer mu.Unlock()
	for addr, want := range map[string]bool{"10.0.0.7:443": false, "192.0.2.1:443": false, "8.8.8.8:443": true} {
		err, ok := seen[addr]
		if !ok {
			t.Errorf("%s was never checked: %v", addr, seen)
		} else if (err == nil) != want {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
