package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

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
