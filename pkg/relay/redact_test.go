package relay

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// Every split of a stream into chunks gives what redacting it whole gives: no secret survives a
// chunk boundary, and nothing else is changed or lost.
func TestRedactorAcrossChunkBoundaries(t *testing.T) {
	value := []byte("sk-relay-0123456789abcdef")
	sec := secrets(value, "Bearer "+string(value))
	stream := []byte("head " + string(value) + " mid Bearer " + string(value) + " enc " + string(sec[len(sec)-1]) +
		" s" + string(value[:5]) + " tail " + string(value))
	want := redact(bytes.Clone(stream), sec)
	if bytes.Contains(want, value) {
		t.Fatalf("redact left the value: %s", want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var got []byte
		r := newRedactor(sec, func(b []byte) error { got = append(got, b...); return nil })
		for rest := stream; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 12))
			if err := r.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		r.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("chunked redaction:\n got %s\nwant %s", got, want)
		}
	}
}

// A stream that breaks off loses what could be the start of the value; what cannot be is passed
// on at once (an SSE event is not held for the next one).
func TestRedactorHoldsOnlyAPossibleStart(t *testing.T) {
	value := []byte("sk-relay-0123456789abcdef")
	var got []byte
	r := newRedactor(secrets(value, "Bearer "+string(value)), func(b []byte) error { got = append(got, b...); return nil })
	r.Write([]byte("data: one\n\n"))
	if string(got) != "data: one\n\n" {
		t.Fatalf("an event that cannot start a secret was held: %q", got)
	}
	r.Write([]byte("data: sk-rel"))
	if string(got) != "data: one\n\ndata: " {
		t.Fatalf("a possible start of the value was passed on: %q", got)
	}
}

func TestPublicAddresses(t *testing.T) {
	for _, c := range []struct {
		addr    string
		dev, ok bool
	}{
		{"93.184.216.34", false, true}, {"2606:4700::1111", false, true},
		{"127.0.0.1", false, false}, {"127.0.0.1", true, true}, {"::1", false, false}, {"::1", true, true},
		{"10.1.2.3", true, false}, {"172.16.0.1", false, false}, {"192.168.1.1", false, false},
		{"169.254.169.254", true, false}, {"fe80::1", false, false}, {"fd00::1", false, false}, {"fc00::1", false, false},
		{"0.0.0.0", true, false}, {"::", false, false}, {"::ffff:127.0.0.1", false, false}, {"::ffff:10.0.0.1", false, false},
		{"100.64.0.1", false, false}, {"64:ff9b::a00:1", false, false}, {"224.0.0.1", false, false},
	} {
		if got := publicAddr(netip.MustParseAddr(c.addr), c.dev); got != c.ok {
			t.Errorf("publicAddr(%s, dev=%v) = %v, want %v", c.addr, c.dev, got, c.ok)
		}
	}
}
