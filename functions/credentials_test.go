package functions_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/runtimeapi"
)

// signedCall is one AWS call a function made, as the endpoint received it.
type signedCall struct {
	target string // X-Amz-Target
	req    *http.Request
	body   []byte
}

// awsEndpoint records every call and lets next answer it.
type awsEndpoint struct {
	*httptest.Server
	mu    sync.Mutex
	calls []signedCall
}

func newAWSEndpoint(t *testing.T, next http.Handler) *awsEndpoint {
	e := &awsEndpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.calls = append(e.calls, signedCall{target: r.Header.Get("X-Amz-Target"), req: r.Clone(context.Background()), body: body})
		e.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *awsEndpoint) taken() []signedCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.calls
	e.calls = nil
	return out
}

// emptyDynamoDB answers every DynamoDB call as a table without the item does: GetItem finds
// nothing, a write succeeds.
var emptyDynamoDB = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Write([]byte(`{}`))
})

var authorization = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$`)

// checkSigned checks that call was signed with creds for region and service: the access key
// and scope of its Authorization header, its session token, and its signature, computed again
// here with the secret key.
func checkSigned(t *testing.T, call signedCall, creds aws.Credentials, region, service string) {
	t.Helper()
	m := authorization.FindStringSubmatch(call.req.Header.Get("Authorization"))
	if m == nil {
		t.Fatalf("%s: Authorization %q is not SigV4", call.target, call.req.Header.Get("Authorization"))
	}
	if m[1] != creds.AccessKeyID || m[3] != region || m[4] != service {
		t.Errorf("%s: signed by %s for %s/%s, want %s for %s/%s", call.target, m[1], m[3], m[4], creds.AccessKeyID, region, service)
	}
	if got := call.req.Header.Get("X-Amz-Security-Token"); got != creds.SessionToken {
		t.Errorf("%s: session token %q, want %q", call.target, got, creds.SessionToken)
	}
	at, err := time.Parse("20060102T150405Z", call.req.Header.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := http.NewRequest(call.req.Method, "http://"+call.req.Host+call.req.URL.RequestURI(), bytes.NewReader(call.body))
	again.Host = call.req.Host
	for _, h := range strings.Split(m[5], ";") {
		if h != "host" {
			again.Header[http.CanonicalHeaderKey(h)] = call.req.Header.Values(h)
		}
	}
	sum := sha256.Sum256(call.body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		t.Fatal(err)
	}
	if want := authorization.FindStringSubmatch(again.Header.Get("Authorization")); want == nil || want[6] != m[6] {
		t.Errorf("%s: the signature is not the one the function's credentials make", call.target)
	}
}

// The functions take their credentials and region from the variables Lambda sets
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION) and sign every
// DynamoDB and KMS call with them: run as real binaries in an environment like Lambda's, with
// the SDK's endpoint variables pointing at recording endpoints.
func TestFunctionsSignWithTheCredentialsLambdaProvides(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: "ASIALAMBDAROLEEXAMPLE", SecretAccessKey: "lambda-role-secret", SessionToken: "lambda-role-session-token"}
	const region = "eu-west-3"
	ddb := newAWSEndpoint(t, emptyDynamoDB)
	keys := kmstest.New()
	defer keys.Close()
	kms := newAWSEndpoint(t, keys.Config.Handler)
	env := append(runtimeapi.LambdaEnviron(),
		"AWS_REGION="+region, "AWS_DEFAULT_REGION="+region,
		"AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey, "AWS_SESSION_TOKEN="+creds.SessionToken,
		"TABLE_NAME=ai-tokens", "KMS_KEY_ID="+kmstest.KeyARN,
		"AWS_ENDPOINT_URL_DYNAMODB="+ddb.URL, "AWS_ENDPOINT_URL_KMS="+kms.URL,
		"AWSRECORD=off") // canned answers, counted here: not a record of what the code calls (iam_test.go)
	cases := []struct {
		fn       string
		want     string // in the response
		ddb, kms []string
	}{
		{"get-token", `"statusCode":404`, []string{"DynamoDB_20120810.GetItem"}, nil},
		{"upsert-token", `"statusCode":201`, []string{"DynamoDB_20120810.GetItem", "DynamoDB_20120810.TransactWriteItems"}, []string{"TrentService.GenerateDataKey"}},
		{"resolve-token", `"reason":"not_found"`, []string{"DynamoDB_20120810.GetItem", "DynamoDB_20120810.PutItem"}, nil}, // the refusal's audit event
	}
	for _, c := range cases {
		ev := event(t, c.fn, nil)
		if c.fn == "resolve-token" {
			ev = []byte(`{"tenant":"acme","tokenId":"openai"}`)
		}
		res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{Binary: filepath.Join(binDir, c.fn), Function: c.fn, Environ: env, Event: ev})
		if err != nil || !strings.Contains(string(res.Response), c.want) {
			t.Fatalf("%s: %s %v, want %s\n%s", c.fn, res.Response, err, c.want, res.Logs)
		}
		for _, side := range []struct {
			name, service string
			calls         []signedCall
			want          []string
		}{{"DynamoDB", "dynamodb", ddb.taken(), c.ddb}, {"KMS", "kms", kms.taken(), c.kms}} {
			var targets []string
			for _, call := range side.calls {
				targets = append(targets, call.target)
				checkSigned(t, call, creds, region, side.service)
			}
			if strings.Join(targets, " ") != strings.Join(side.want, " ") {
				t.Errorf("%s called %s %v, want %v\n%s", c.fn, side.name, targets, side.want, res.Logs)
			}
		}
	}
	// Without the credentials Lambda provides, a function stops at init and says why.
	for _, fn := range []string{"get-token", "upsert-token", "resolve-token"} {
		res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{Binary: filepath.Join(binDir, fn), Function: fn,
			Environ: append(append([]string{}, env...), "AWS_ACCESS_KEY_ID="), Event: []byte(`{}`)})
		var line struct{ Msg, Error string }
		if err == nil || json.Unmarshal(bytes.TrimSpace(res.Logs), &line) != nil || line.Msg != "init failed" || !strings.Contains(line.Error, "AWS_ACCESS_KEY_ID") {
			t.Errorf("%s without credentials: %v %s", fn, err, res.Logs)
		}
	}
}

// No function links the SDK's configuration loader (and with it the SSO, SSO-OIDC, STS and
// sign-in clients whose package initialisation every cold start would pay): see pkg/awsconf.
func TestFunctionsDoNotLinkTheSDKConfigLoader(t *testing.T) {
	for _, fn := range functionNames() {
		for _, pkg := range []string{"github.com/aws/aws-sdk-go-v2/config", "github.com/aws/aws-sdk-go-v2/service/sts", "github.com/aws/aws-sdk-go-v2/service/sso"} {
			if links(t, fn, pkg) {
				t.Errorf("%s links %s", fn, pkg)
			}
		}
	}
}
