package metrics_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"aitokens/pkg/devtools/emfcheck"
	"aitokens/pkg/metrics"
)

var (
	at   = time.Date(2026, 11, 30, 12, 0, 0, 123_000_000, time.UTC)
	dims = []metrics.Dimension{{"Service", "ai-tokens-prod"}, {"Function", "resolve-token"}}
)

// Every line the writer makes is an EMF document by the specification's schema, and says what
// was recorded.
func TestLinesAreValidEMF(t *testing.T) {
	cases := []struct {
		name   string
		record func(r *metrics.Recorder)
		props  []metrics.Dimension
		want   map[string]any // members of the line
	}{
		{"nothing", func(*metrics.Recorder) {}, nil, map[string]any{"Service": "ai-tokens-prod"}},
		{"a request", func(r *metrics.Recorder) {
			r.Add(metrics.Requests, 1)
			r.Add(metrics.ClientErrors, 1)
			r.Add(metrics.ServerErrors, 0)
			r.Add(metrics.Latency, 12.345)
			r.Add(metrics.ColdStarts, 1)
		}, []metrics.Dimension{{"requestId", "c6af9ac6"}, {"traceId", "1-5759e988-bd862e3fe1be46a994272793"}},
			map[string]any{"Requests": 1.0, "4xx": 1.0, "Latency": 12.345, "ColdStart": 1.0, "traceId": "1-5759e988-bd862e3fe1be46a994272793"}},
		{"counted twice", func(r *metrics.Recorder) {
			r.Add(metrics.KMSCalls, 1)
			r.Add(metrics.KMSCalls, 1)
		}, nil, map[string]any{"KMSCalls": 2.0}},
		{"a refused resolve", func(r *metrics.Recorder) {
			r.Add(metrics.Requests, 1)
			r.AddBy(metrics.RefusedResolves, 1, metrics.Dimension{Name: "Reason", Value: "expired"})
		}, nil, map[string]any{"RefusedResolves": 1.0, "Reason": "expired"}},
		{"two reasons in one line", func(r *metrics.Recorder) {
			r.AddBy(metrics.RefusedResolves, 1, metrics.Dimension{Name: "Reason", Value: "expired"})
			r.AddBy(metrics.RefusedResolves, 1, metrics.Dimension{Name: "Reason", Value: "not_found"})
		}, nil, map[string]any{"RefusedResolves": 2.0}},
		{"not a number", func(r *metrics.Recorder) { r.Add(metrics.Latency, math.NaN()) }, nil, map[string]any{"Latency": 0.0}},
		{"strings that need escaping", func(r *metrics.Recorder) { r.Add(metrics.Requests, 1) },
			[]metrics.Dimension{{"requestId", "a\"b\\c\n\x00<>&\u2028é\xff"}}, map[string]any{"requestId": "a\"b\\c\n\x00<>&\u2028é\ufffd"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &metrics.Recorder{}
			c.record(r)
			line := r.AppendEMF(nil, at, dims, c.props...)
			if err := emfcheck.Check(line); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatal(err)
			}
			if ts := got["_aws"].(map[string]any)["Timestamp"]; ts != float64(at.UnixMilli()) {
				t.Errorf("Timestamp %v", ts)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v in %s", k, got[k], v, line)
				}
			}
			if _, ok := got["Reason"]; ok != strings.Contains(c.name, "a refused") {
				t.Errorf("Reason member: %v in %s", ok, line)
			}
		})
	}
}

// A refused resolve is published under Service+Function (what the alarm watches) and under
// Service+Function+Reason (what the dashboard breaks down), and nothing else is.
func TestRefusalsAreBrokenDownByReason(t *testing.T) {
	r := &metrics.Recorder{}
	r.Add(metrics.Requests, 1)
	r.AddBy(metrics.RefusedResolves, 1, metrics.Dimension{Name: "Reason", Value: "consumer_not_allowed"})
	var doc struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Dimensions [][]string
				Metrics    []struct{ Name string }
			}
		} `json:"_aws"`
	}
	if err := json.Unmarshal(r.AppendEMF(nil, at, dims), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, d := range doc.AWS.CloudWatchMetrics {
		for _, m := range d.Metrics {
			for _, set := range d.Dimensions {
				got[m.Name] = append(got[m.Name], strings.Join(set, "+"))
			}
		}
	}
	want := map[string][]string{"Requests": {"Service+Function"}, "RefusedResolves": {"Service+Function", "Service+Function+Reason"}}
	if len(got) != len(want) || strings.Join(got["Requests"], ",") != strings.Join(want["Requests"], ",") ||
		strings.Join(got["RefusedResolves"], ",") != strings.Join(want["RefusedResolves"], ",") {
		t.Errorf("published as %v, want %v", got, want)
	}
}

// The checker itself refuses what the specification does not allow, so the test above can fail.
func TestCheckerRefusesInvalidLines(t *testing.T) {
	for _, line := range []string{
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"D":"x"}`,         // no M
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"M":1}`,           // no D
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"M":"1","D":"x"}`, // string value
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Counts"}]}]},"M":1,"D":"x"}`,  // unit
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":" ","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"M":1,"D":"x"}`,                  // blank namespace
		`{"_aws":{"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"M":1,"D":"x"}`,                                // no Timestamp
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"M":1,"D":"é"}`,                  // non-ASCII dimension
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}],"X":1}]},"M":1,"D":"x"}`,            // extra member
		`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"M":1,"D":"x"`,                   // not JSON
	} {
		if emfcheck.Check([]byte(line)) == nil {
			t.Errorf("accepted %s", line)
		}
	}
	if err := emfcheck.Check([]byte(`{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"M":[1,2],"D":"x"}`)); err != nil {
		t.Errorf("refused a valid line: %v", err)
	}
}

func TestContextAndNilRecorder(t *testing.T) {
	var none *metrics.Recorder
	none.Add(metrics.Requests, 1) // no panic, no effect
	if metrics.FromContext(context.Background()) != nil || none.Value(metrics.Requests) != 0 {
		t.Fatal("a context without a recorder has one")
	}
	r := &metrics.Recorder{}
	ctx := metrics.NewContext(context.Background(), r)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { metrics.FromContext(ctx).Add(metrics.KMSCalls, 1) })
	}
	wg.Wait()
	if r.Value(metrics.KMSCalls) != 50 {
		t.Fatalf("KMSCalls %v", r.Value(metrics.KMSCalls))
	}
}

// The line of a request costs a few microseconds and a couple of allocations: it does not slow
// the request path measurably (a GET is about a millisecond).
func BenchmarkLine(b *testing.B) {
	buf := make([]byte, 0, 1024)
	for b.Loop() {
		r := &metrics.Recorder{}
		r.Add(metrics.Requests, 1)
		r.Add(metrics.ClientErrors, 0)
		r.Add(metrics.ServerErrors, 0)
		r.Add(metrics.Latency, 1.234)
		r.Add(metrics.ColdStarts, 0)
		r.Add(metrics.KMSCalls, 0)
		buf = r.AppendEMF(buf[:0], at, dims, metrics.Dimension{Name: "requestId", Value: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"},
			metrics.Dimension{Name: "traceId", Value: "1-5759e988-bd862e3fe1be46a994272793"})
	}
}
