// Package awsrecord is a recording reverse proxy for the AWS endpoints a function's binary is
// given in tests (DynamoDB Local, the test KMS, the test EventBridge): it passes every request
// on unchanged and records, per function, each IAM action the request needs and the resource
// it names. DynamoDB Local and the doubles enforce no IAM, so this record is what a test
// compares with the roles of template.yaml (functions/iam_test.go).
package awsrecord

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Call is one IAM action a function needed, on one resource.
type Call struct {
	Function string
	// Action is the IAM action: dynamodb:PutItem, kms:Decrypt, events:PutEvents. Inside
	// TransactWriteItems each item's kind gives its action (Put -> dynamodb:PutItem,
	// ConditionCheck -> dynamodb:ConditionCheckItem), inside TransactGetItems each Get gives
	// dynamodb:GetItem: the transactions are no IAM actions of their own.
	Action string
	// Resource is what the request names: a table, "<table>/index/<name>" for a Query or Scan
	// on an index, a KMS key id (empty when a Decrypt leaves it to the ciphertext), a bus.
	Resource string
	// ContextKeys are the keys of a KMS request's encryption context, sorted, comma-separated.
	ContextKeys string
}

func (c Call) String() string {
	s := c.Action + " on " + c.Resource
	if c.ContextKeys != "" {
		s += " (encryption context keys " + c.ContextKeys + ")"
	}
	return s
}

// Recorder records the calls of every function whose endpoints it proxies.
type Recorder struct {
	mu      sync.Mutex
	calls   map[Call]bool
	proxies map[string]*httptest.Server // function + " " + upstream
}

// New returns an empty recorder; Close stops its proxies.
func New() *Recorder {
	return &Recorder{calls: map[Call]bool{}, proxies: map[string]*httptest.Server{}}
}

// endpointVars are the environment variables that point a function's AWS clients at an
// endpoint (pkg/config's DYNAMODB_ENDPOINT and the SDK's AWS_ENDPOINT_URL[_<SERVICE>]).
func endpointVar(name string) bool {
	return name == "DYNAMODB_ENDPOINT" || name == "AWS_ENDPOINT_URL" || strings.HasPrefix(name, "AWS_ENDPOINT_URL_")
}

// Env returns env with every endpoint variable of function pointed at a recording proxy in
// front of the endpoint it named (empty values, which mean AWS, stay as they are).
// An environment with AWSRECORD=off is left alone: a test whose endpoints are canned answers
// (not DynamoDB Local or a double) and which counts the calls itself opts out so.
func (r *Recorder) Env(function string, env []string) []string {
	if slices.Contains(env, "AWSRECORD=off") {
		return env
	}
	out := make([]string, len(env))
	for i, kv := range env {
		out[i] = kv
		name, value, _ := strings.Cut(kv, "=")
		if !endpointVar(name) || value == "" {
			continue
		}
		if proxy, err := r.proxy(function, value); err == nil {
			out[i] = name + "=" + proxy
		}
	}
	return out
}

func (r *Recorder) proxy(function, upstream string) (string, error) {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return "", fmt.Errorf("endpoint %q: not a URL", upstream)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.proxies[function+" "+upstream]; ok {
		return s.URL, nil
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the client signed its own Host (SigV4)
		},
		FlushInterval: -1,
		// A connection per request: a test's endpoint closes when the test ends and another
		// may take its port, so a kept connection could be a dead one (a 502 the client would
		// retry, a call made twice).
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A client gone (a deadline, a process killed mid-call) is no news for the test.
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Err() == nil {
				fmt.Fprintf(os.Stderr, "awsrecord: %s %s: %v\n", function, req.Header.Get("X-Amz-Target"), err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.record(function, req.Header, body)
		rp.ServeHTTP(w, req)
	}))
	r.proxies[function+" "+upstream] = s
	return s.URL, nil
}

// Close stops every proxy.
func (r *Recorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.proxies {
		s.Close()
	}
}

// Calls is every call recorded, sorted.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Call, 0, len(r.calls))
	for c := range r.calls {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Function+a.Action+a.Resource+a.ContextKeys < b.Function+b.Action+b.Resource+b.ContextKeys
	})
	return out
}

// Add records calls as if the proxy had seen them (for a test of what reads the record).
func (r *Recorder) Add(calls ...Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range calls {
		r.calls[c] = true
	}
}

func (r *Recorder) record(function string, h http.Header, body []byte) {
	if h.Get("Content-Encoding") == "gzip" {
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if raw, err := io.ReadAll(zr); err == nil {
				body = raw
			}
		}
	}
	calls := Actions(h.Get("X-Amz-Target"), body)
	for i := range calls {
		calls[i].Function = function
	}
	r.Add(calls...)
}

// services maps the X-Amz-Target prefixes of the JSON protocols to IAM service prefixes.
var services = map[string]string{
	"DynamoDB_20120810":             "dynamodb",
	"DynamoDBStreams_20120810":      "dynamodb",
	"TrentService":                  "kms",
	"AWSEvents":                     "events",
	"GraniteServiceVersion20100801": "cloudwatch",
	"Logs_20140328":                 "logs",
	"AmazonSQS":                     "sqs",
}

// Actions is the IAM actions (without Function) one request needs: target is its X-Amz-Target
// header, body its JSON. A request it cannot read is recorded as such (action "unknown:..."),
// never dropped, so that a new kind of call cannot pass unseen.
func Actions(target string, body []byte) []Call {
	prefix, op, ok := strings.Cut(target, ".")
	service := services[prefix]
	if !ok || service == "" {
		return []Call{{Action: "unknown:" + target}}
	}
	var req struct {
		TableName, IndexName string
		RequestItems         map[string]json.RawMessage
		TransactItems        []map[string]struct{ TableName string }
		KeyId                string
		EncryptionContext    map[string]string
		Entries              []struct{ EventBusName string }
		StreamArn            string
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return []Call{{Action: service + ":" + op, Resource: "unreadable body"}}
	}
	switch service + ":" + op {
	case "dynamodb:TransactWriteItems", "dynamodb:TransactGetItems":
		var calls []Call
		for _, item := range req.TransactItems {
			for kind, x := range item {
				action := map[string]string{"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
					"ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}[kind]
				if action == "" {
					action = "unknown:" + op + "." + kind
				}
				calls = append(calls, Call{Action: "dynamodb:" + action, Resource: x.TableName})
			}
		}
		return calls
	case "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem":
		var calls []Call
		for table := range req.RequestItems {
			calls = append(calls, Call{Action: "dynamodb:" + op, Resource: table})
		}
		return calls
	case "events:PutEvents":
		var calls []Call
		for _, e := range req.Entries {
			bus := e.EventBusName
			if bus == "" {
				bus = "default"
			}
			calls = append(calls, Call{Action: "events:PutEvents", Resource: bus})
		}
		return calls
	}
	c := Call{Action: service + ":" + op, Resource: req.TableName}
	switch {
	case service == "kms":
		c.Resource = req.KeyId
		keys := make([]string, 0, len(req.EncryptionContext))
		for k := range req.EncryptionContext {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		c.ContextKeys = strings.Join(keys, ",")
	case req.StreamArn != "":
		c.Resource = req.StreamArn
	case req.IndexName != "":
		c.Resource = req.TableName + "/index/" + req.IndexName
	}
	return []Call{c}
}
