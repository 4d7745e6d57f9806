// Package metrics gathers the metrics of one Lambda invocation and writes them as one line of
// CloudWatch's Embedded Metric Format (EMF) to the function's log stream, where CloudWatch Logs
// extracts them: no PutMetricData call, nothing on the request path but a few additions and one
// write at the end. Any package may count into the Recorder an invocation carries in its
// context (FromContext); without one, counting does nothing.
//
// No Go EMF library fits this module's Go version and dependencies, so this is a small writer
// of the specification's subset the service needs; metrics_test.go checks every line it makes
// against a JSON schema written from the specification.
package metrics

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Namespace holds every metric of the service; the Service dimension tells stacks apart.
const Namespace = "AITokens"

// Unit is a CloudWatch unit.
type Unit string

const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
)

// Metric is a name and its unit.
type Metric struct {
	Name string
	Unit Unit
}

// The metrics of the service. A new one (e.g. events published) is one more line here, in All,
// an Add where it happens, and a figure on the template's dashboard.
var (
	Requests     = Metric{"Requests", Count}
	ClientErrors = Metric{"4xx", Count}
	ServerErrors = Metric{"5xx", Count}
	Latency      = Metric{"Latency", Milliseconds}
	ColdStarts   = Metric{"ColdStart", Count}
	// KMSCalls counts GenerateDataKey and Decrypt calls (not their retries).
	KMSCalls    = Metric{"KMSCalls", Count}
	CacheHits   = Metric{"ResolveCacheHits", Count}
	CacheMisses = Metric{"ResolveCacheMisses", Count}
	// RefusedResolves is broken down by the Reason dimension (not_found, expired, ...).
	RefusedResolves = Metric{"RefusedResolves", Count}
	// Lifecycle events (publish-events): entries EventBridge accepted, and events an invocation
	// reported back as batch item failures (Lambda hands them again; then the dead-letter queue).
	EventsPublished = Metric{"EventsPublished", Count}
	EventsFailed    = Metric{"EventsFailed", Count}
	// Expiry reminders (expiring and expired events) sweep-expiring wrote.
	RemindersWritten = Metric{"RemindersWritten", Count}
)

// All is every metric of the service: the template's dashboard shows each (a test checks).
var All = []Metric{Requests, ClientErrors, ServerErrors, Latency, ColdStarts, KMSCalls, CacheHits, CacheMisses, RefusedResolves,
	EventsPublished, EventsFailed, RemindersWritten}

// Dimension is a dimension's name and value, or a property's: a member of the line that is
// not a metric.
type Dimension struct{ Name, Value string }

// Recorder gathers one invocation's metrics. Its methods are safe for concurrent use, and the
// nil Recorder records nothing.
type Recorder struct {
	mu     sync.Mutex
	values []value
}

type value struct {
	metric Metric
	n      float64
	by     Dimension // also published with this dimension added ("" for none)
}

type recorderKey struct{}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// FromContext returns the Recorder of ctx, or nil.
func FromContext(ctx context.Context) *Recorder {
	r, _ := ctx.Value(recorderKey{}).(*Recorder)
	return r
}

// Add adds n to m.
func (r *Recorder) Add(m Metric, n float64) { r.add(m, n, Dimension{}) }

// AddBy adds n to m, which is published both without and with the dimension by (the refused
// resolves by Reason). One line holds one value per dimension name: a later AddBy with another
// value of the same name counts only without the dimension.
func (r *Recorder) AddBy(m Metric, n float64, by Dimension) { r.add(m, n, by) }

func (r *Recorder) add(m Metric, n float64, by Dimension) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.values {
		if r.values[i].metric.Name == m.Name {
			r.values[i].n += n
			if r.values[i].by != by {
				r.values[i].by = Dimension{}
			}
			return
		}
	}
	r.values = append(r.values, value{metric: m, n: n, by: by})
}

// Value returns what m counts so far.
func (r *Recorder) Value(m Metric) float64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.values {
		if v.metric.Name == m.Name {
			return v.n
		}
	}
	return 0
}

// AppendEMF appends the recorded metrics to b as one EMF document (no newline), at time at,
// with the dimensions dims (every metric is published with all of them) and properties props
// (members for finding the line, not metrics). Dimension and property names must differ from
// each other and from the metrics' names.
func (r *Recorder) AppendEMF(b []byte, at time.Time, dims []Dimension, props ...Dimension) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b = append(b, `{"_aws":{"Timestamp":`...)
	b = strconv.AppendInt(b, at.UnixMilli(), 10)
	b = append(b, `,"CloudWatchMetrics":[`...)
	b = r.appendDirective(b, dims, Dimension{}, false)
	// One more directive per breakdown dimension, with its metrics published both ways.
	var extra []Dimension
	for _, v := range r.values {
		if v.by.Name != "" && !hasName(extra, v.by.Name) {
			extra = append(extra, v.by)
			b = append(b, ',')
			b = r.appendDirective(b, dims, v.by, true)
		}
	}
	b = append(b, "]}"...)
	for _, d := range dims {
		b = appendMember(b, d.Name, d.Value)
	}
	for _, d := range extra {
		b = appendMember(b, d.Name, d.Value)
	}
	for _, v := range r.values {
		b = append(b, ',')
		b = appendString(b, v.metric.Name)
		b = append(b, ':')
		b = appendNumber(b, v.n)
	}
	for _, p := range props {
		b = appendMember(b, p.Name, p.Value)
	}
	return append(b, '}')
}

// appendDirective writes the directive of the metrics without a breakdown (by empty) or of
// those broken down by by.Name.
func (r *Recorder) appendDirective(b []byte, dims []Dimension, by Dimension, both bool) []byte {
	b = append(b, `{"Namespace":`...)
	b = appendString(b, Namespace)
	b = append(b, `,"Dimensions":[`...)
	b = appendDimensionSet(b, dims, "")
	if both {
		b = append(b, ',')
		b = appendDimensionSet(b, dims, by.Name)
	}
	b = append(b, `],"Metrics":[`...)
	first := true
	for _, v := range r.values {
		if v.by.Name != by.Name {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"Name":`...)
		b = appendString(b, v.metric.Name)
		b = append(b, `,"Unit":`...)
		b = appendString(b, string(v.metric.Unit))
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendDimensionSet(b []byte, dims []Dimension, extra string) []byte {
	b = append(b, '[')
	for i, d := range dims {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, d.Name)
	}
	if extra != "" {
		if len(dims) > 0 {
			b = append(b, ',')
		}
		b = appendString(b, extra)
	}
	return append(b, ']')
}

func hasName(dims []Dimension, name string) bool {
	for _, d := range dims {
		if d.Name == name {
			return true
		}
	}
	return false
}

func appendMember(b []byte, name, v string) []byte {
	b = append(b, ',')
	b = appendString(b, name)
	b = append(b, ':')
	return appendString(b, v)
}

// appendNumber writes n as a JSON number; NaN and infinities, which JSON has not, as 0.
func appendNumber(b []byte, n float64) []byte {
	if math.IsNaN(n) || math.IsInf(n, 0) {
		n = 0
	}
	return strconv.AppendFloat(b, n, 'f', -1, 64)
}

// appendString writes s as a JSON string, as encoding/json would (invalid UTF-8 becomes
// U+FFFD), without its reflection.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
