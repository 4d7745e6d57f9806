package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/relay"
	"aitokens/pkg/relayclient"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

// BenchmarkRelay is the relay's overhead (issue 28): the same request sent straight to an
// upstream and through the relay (the agent's client with relayclient's Transport, the relay on
// the real service: DynamoDB Local, the test KMS behind the warm cache), alternating iteration
// by iteration so that both sides see the same noise. It reports each side's mean, their
// difference and the ratio relay/direct, for a small JSON request and for the time to the first
// byte of a Server-Sent Events stream, against upstreams that think 0 ms (the overhead alone),
// 20 ms and 100 ms before answering (fast real APIs; an LLM's first token takes longer). The
// service's part of the overhead is measured in the same loop: grant-µs is RelayGrant alone
// (resolve's one GetItem, the value from the warm cache); wire-µs is the same relayed call to
// a relay whose granter answers at once (a fixed grant, no store: the relay's wire work alone,
// the only place a stand-in is used, to split the overhead), and wire/direct its ratio.
func BenchmarkRelay(b *testing.B) {
	for _, think := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("small/upstream=%v", think), func(b *testing.B) {
			bench(b, think, false)
		})
		b.Run(fmt.Sprintf("sse-first-byte/upstream=%v", think), func(b *testing.B) {
			bench(b, think, true)
		})
	}
}

func bench(b *testing.B, think time.Duration, sse bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(think)
		if !sse {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"Hello."}}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 5 {
			fmt.Fprintf(w, "data: {\"delta\":\"token %d\"}\n\n", i)
			rc.Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	b.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	host := "localhost:" + u.Port() // a policy names no IP literal
	relayURL, svc := benchRelay(b, host)
	wireURL := fixedRelay(b, host)

	// One client settings for both sides: the same base transport, keep-alive on.
	base := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	b.Cleanup(base.CloseIdleConnections)
	rt, err := relayclient.New(relayclient.Config{RelayURL: relayURL, Tenant: "acme", TokenID: "openai", Consumer: "agent:bench",
		Hosts: []string{host}, Base: base})
	if err != nil {
		b.Fatal(err)
	}
	wt, err := relayclient.New(relayclient.Config{RelayURL: wireURL, Tenant: "acme", TokenID: "openai", Consumer: "agent:bench",
		Hosts: []string{host}, Base: base})
	if err != nil {
		b.Fatal(err)
	}
	direct, relayed, wire := &http.Client{Transport: base}, &http.Client{Transport: rt}, &http.Client{Transport: wt}
	target := "http://" + host + "/v1/chat/completions"

	// call sends one request and returns the time to the whole answer, or (sse) to its first
	// byte; the rest of a stream is read outside the measured time.
	call := func(c *http.Client) time.Duration {
		req, _ := http.NewRequest("POST", target, strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-dummy")
		start := time.Now()
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			body, _ := io.ReadAll(res.Body)
			b.Fatalf("%d %s", res.StatusCode, body)
		}
		var d time.Duration
		if sse {
			br := bufio.NewReader(res.Body)
			if _, err := br.ReadByte(); err != nil {
				b.Fatal(err)
			}
			d = time.Since(start)
			io.Copy(io.Discard, br)
		} else {
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				b.Fatal(err)
			}
			d = time.Since(start)
		}
		return d
	}
	grant := func() time.Duration {
		start := time.Now()
		if _, _, err := svc.RelayGrant(context.Background(), "acme", "openai", &token.Consumer{Kind: "agent", ID: "bench"}, host, "bench"); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	call(direct) // connections and the warm cache, outside the measure
	call(relayed)
	call(wire)
	var dSum, rSum, gSum, wSum time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	// Each side takes each place in turn, so that none is always first after a pause.
	sides := []func(){
		func() { dSum += call(direct) },
		func() { rSum += call(relayed) },
		func() { gSum += grant() },
		func() { wSum += call(wire) },
	}
	for i := 0; b.Loop(); i++ {
		for j := range sides {
			sides[(i+j)%len(sides)]()
		}
	}
	n := float64(b.N)
	d, r := float64(dSum.Microseconds())/n, float64(rSum.Microseconds())/n
	b.ReportMetric(d, "direct-µs")
	b.ReportMetric(r, "relay-µs")
	b.ReportMetric(r-d, "overhead-µs")
	b.ReportMetric(float64(gSum.Microseconds())/n, "grant-µs")
	b.ReportMetric(r/d, "relay/direct")
	w := float64(wSum.Microseconds()) / n
	b.ReportMetric(w, "wire-µs")
	b.ReportMetric(w/d, "wire/direct")
}

// benchRelay is the relay on the real service with one token, openai, for host; its URL.
func benchRelay(b *testing.B, host string) (string, *service.Service) {
	svc, _, _ := testenv.KMSService(b, time.Now)
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: aws.String("openai"), Value: aws.String(secret),
		Egress: bearer(host), Meta: service.Meta{RequestID: "bench"}}); err != nil {
		b.Fatal(err)
	}
	h, err := relay.New(relay.Config{Grants: svc, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Dev: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL, svc
}

// fixedGrant gives one value and policy without a store: the relay's wire work alone.
type fixedGrant token.Egress

func (g fixedGrant) RelayGrant(context.Context, string, string, *token.Consumer, string, string) ([]byte, token.Egress, error) {
	return []byte(secret), token.Egress(g), nil
}

// fixedRelay is the relay with a fixedGrant for host; its URL.
func fixedRelay(b *testing.B, host string) string {
	h, err := relay.New(relay.Config{Grants: fixedGrant(*bearer(host)), Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Dev: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}
