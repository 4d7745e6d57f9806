package awsconf_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsconf/sdkchain"
	"aitokens/pkg/awsretry"
)

// clearAWSEnv empties every AWS_ variable of this process for the test, and points the shared
// files nowhere, so that only the case's variables count.
func clearAWSEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
		}
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

// In every environment Lambda can give a function, FromEnv makes what the SDK's own default
// loader makes: the same credentials (source included), region and endpoints.
func TestFromEnvIsTheSDKDefaultInLambda(t *testing.T) {
	lambda := map[string]string{"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "eu-west-3",
		"AWS_ACCESS_KEY_ID": "ASIALAMBDAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "lambda-secret", "AWS_SESSION_TOKEN": "lambda-session",
		"AWS_LAMBDA_FUNCTION_NAME": "get-token", "AWS_EXECUTION_ENV": ""}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range lambda {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"lambda", lambda},
		{"default region only", with(map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"})},
		{"AWS_REGION wins", with(map[string]string{"AWS_DEFAULT_REGION": "us-west-2"})},
		{"no session token", with(map[string]string{"AWS_SESSION_TOKEN": ""})},
		{"old key names", with(map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ACCESS_KEY": "AKIAOLD", "AWS_SECRET_KEY": "old"})},
		{"account id", with(map[string]string{"AWS_ACCOUNT_ID": "111122223333"})},
		{"service endpoints", with(map[string]string{"AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:4000", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:4001"})},
		{"global endpoint", with(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4002"})},
		{"endpoints ignored", with(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4002", "AWS_ENDPOINT_URL_KMS": "http://x", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})},
		{"a CA bundle", with(map[string]string{"AWS_CA_BUNDLE": caBundle(t)})},
		// Other credential sources do not count when the environment holds credentials.
		{"a web identity too", with(map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent", "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/x"})},
		{"container credentials too", with(map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/creds"})},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearAWSEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			want, err := sdkchain.Load(ctx, awsretry.DefaultPolicy) // LoadDefaultConfig with the policy
			if err != nil {
				t.Fatal(err)
			}
			got, err := awsconf.FromEnv(os.Getenv, awsretry.DefaultPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if got.Region != want.Region || aws.ToString(got.BaseEndpoint) != aws.ToString(want.BaseEndpoint) || got.DefaultsMode != want.DefaultsMode {
				t.Errorf("region %q endpoint %q mode %q, the SDK's %q %q %q", got.Region, aws.ToString(got.BaseEndpoint), got.DefaultsMode,
					want.Region, aws.ToString(want.BaseEndpoint), want.DefaultsMode)
			}
			gc, err1 := got.Credentials.Retrieve(ctx)
			wc, err2 := want.Credentials.Retrieve(ctx)
			if err1 != nil || err2 != nil || gc != wc {
				t.Errorf("credentials %+v (%v), the SDK's %+v (%v)", gc, err1, wc, err2)
			}
			if g, w := trusted(got), trusted(want); g != w && (g == nil || w == nil || !g.Equal(w)) {
				t.Errorf("trusted CAs differ from the SDK's")
			}
			if g, w := aws.ToString(kms.NewFromConfig(got).Options().BaseEndpoint), aws.ToString(kms.NewFromConfig(want).Options().BaseEndpoint); g != w {
				t.Errorf("KMS endpoint %q, the SDK's %q", g, w)
			}
			if g, w := aws.ToString(dynamodb.NewFromConfig(got).Options().BaseEndpoint), aws.ToString(dynamodb.NewFromConfig(want).Options().BaseEndpoint); g != w {
				t.Errorf("DynamoDB endpoint %q, the SDK's %q", g, w)
			}
		})
	}
}

// trusted is the CA pool of a configuration's HTTP client (nil: the system's).
func trusted(cfg aws.Config) *x509.CertPool {
	tr := cfg.HTTPClient.(*awshttp.BuildableClient).GetTransport()
	if tr.TLSClientConfig == nil {
		return nil
	}
	return tr.TLSClientConfig.RootCAs
}

// caBundle writes a PEM file with one self-signed certificate.
func caBundle(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Without credentials or region a function stops at init with an error that says which.
func TestFromEnvRefusesAnIncompleteEnvironment(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing", map[string]string{}, "AWS_ACCESS_KEY_ID"},
		{"no secret", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_REGION": "eu-west-1"}, "AWS_SECRET_ACCESS_KEY"},
		{"no region", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "AWS_REGION"},
		{"a profile", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1", "AWS_PROFILE": "someone"}, "AWS_PROFILE"},
		{"FIPS endpoints", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1", "AWS_USE_FIPS_ENDPOINT": "true"}, "AWS_USE_FIPS_ENDPOINT"},
		{"endpoint discovery", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1", "AWS_ENABLE_ENDPOINT_DISCOVERY": "true"}, "AWS_ENABLE_ENDPOINT_DISCOVERY"},
		{"missing CA bundle", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1", "AWS_CA_BUNDLE": "/nonexistent.pem"}, "AWS_CA_BUNDLE"},
	}
	for _, c := range cases {
		_, err := awsconf.FromEnv(func(k string) string { return c.env[k] }, awsretry.DefaultPolicy)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
}

// The policy reaches the clients: its attempts and its per-attempt deadline.
func TestFromEnvAppliesThePolicy(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "eu-west-1"}
	policy := awsretry.Policy{MaxAttempts: 7, AttemptTimeout: 1234567}
	cfg, err := awsconf.FromEnv(func(k string) string { return env[k] }, policy)
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Retryer().MaxAttempts(); n != 7 {
		t.Errorf("max attempts %d", n)
	}
	if d := cfg.HTTPClient.(*awshttp.BuildableClient).GetTimeout(); d != 1234567 {
		t.Errorf("attempt timeout %v", d)
	}
}
