package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal/kmsseal"
)

func newKMSHarness(t *testing.T) (*harness, *kmstest.Server) {
	t.Helper()
	srv := kmstest.New()
	t.Cleanup(srv.Close)
	srv.UseFromEnv(t)
	client, err := kmsseal.NewClient(context.Background(), testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	sealer := kmsseal.New(client, "alias/ai-tokens")
	return newHarnessWith(t, sealer), srv
}

// Only the write that carries a new value calls KMS: one call per create, none for anything else.
func TestKMSCallsPerOperation(t *testing.T) {
	h, srv := newKMSHarness(t)
	mgr := h.manager()
	const value = "sk-kms-end-to-end-4711"
	steps := []struct {
		name, method, path, body string
		status                   int
		generate                 int
	}{
		{"create", "PUT", "/openai", `{"name":"OpenAI","value":"` + value + `"}`, 201, 1},
		{"rename", "PUT", "/openai", `{"name":"Renamed"}`, 204, 0},
		{"same value", "PUT", "/openai", `{"name":"Renamed","value":"` + value + `"}`, 204, 0},
		{"other value refused", "PUT", "/openai", `{"name":"Renamed","value":"sk-other"}`, 400, 0},
		{"patch", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"P"}]`, 204, 0},
		{"get", "GET", "/openai", ``, 200, 0},
		{"list", "GET", "", ``, 200, 0},
		{"search", "POST", "/search", `{"q":"id:openai"}`, 200, 0},
	}
	for _, s := range steps {
		before := srv.Calls()
		res := h.do(s.method, base+s.path, s.body, mgr)
		after := srv.Calls()
		if res.status != s.status {
			t.Fatalf("%s: %d %s", s.name, res.status, res.body)
		}
		if got := after["GenerateDataKey"] - before["GenerateDataKey"]; got != s.generate || after["Decrypt"] != 0 {
			t.Fatalf("%s: %d GenerateDataKey (want %d), %d Decrypt (want 0)", s.name, got, s.generate, after["Decrypt"])
		}
	}
	// The internal resolve path opens it, with one Decrypt.
	got, err := h.svc.Resolve(context.Background(), "acme", "openai", nil, "test-resolve")
	if err != nil || string(got) != value || srv.Calls()["Decrypt"] != 1 {
		t.Fatalf("resolve: %q %v, calls %v", got, err, srv.Calls())
	}
	// Neither the value nor any data key KMS handed out is in the table in plain.
	for _, it := range scanTable(t, h) {
		for name, av := range it {
			var raw []byte
			switch v := av.(type) {
			case *types.AttributeValueMemberS:
				raw = []byte(v.Value)
			case *types.AttributeValueMemberB:
				raw = v.Value
			}
			if bytes.Contains(raw, []byte(value)) {
				t.Fatalf("%s holds the value", name)
			}
			for _, dk := range srv.DataKeys() {
				if bytes.Contains(raw, dk) {
					t.Fatalf("%s holds a plaintext data key", name)
				}
			}
		}
	}
	before := srv.Calls()
	if res := h.do("DELETE", base+"/openai", "", mgr); res.status != 204 || !reflect.DeepEqual(srv.Calls(), before) {
		t.Fatalf("delete: %d, KMS calls %v -> %v", res.status, before, srv.Calls())
	}
}

func TestKMSFaultsWriteNothing(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(*kmstest.Server)
		status  int
		message string
	}{
		{"throttled forever", func(s *kmstest.Server) { s.Throttle(-1) }, http.StatusServiceUnavailable, "key service is unavailable"},
		{"KMS unreachable", func(s *kmstest.Server) { s.Close() }, http.StatusServiceUnavailable, "key service is unavailable"},
		{"access denied", func(s *kmstest.Server) { s.Refuse("AccessDeniedException") }, http.StatusBadGateway, "AccessDeniedException"},
		{"disabled key", func(s *kmstest.Server) { s.Refuse("DisabledException") }, http.StatusBadGateway, "DisabledException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, srv := newKMSHarness(t)
			h.create("existing", "Existing", "sk-existing")
			before := scanTable(t, h)
			c.setup(srv)
			res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"sk-never-stored"}`, h.manager())
			if res.status != c.status || !strings.Contains(res.errorBody(t).Message, c.message) {
				t.Fatalf("%d %s", res.status, res.body)
			}
			if after := scanTable(t, h); !reflect.DeepEqual(before, after) {
				t.Fatal("a failed create wrote to the table")
			}
			// A rename needs no KMS and still works while KMS is failing.
			if res := h.do("PUT", base+"/existing", `{"name":"Renamed"}`, h.manager()); res.status != 204 {
				t.Fatalf("rename during a KMS fault: %d", res.status)
			}
		})
	}
}

// BenchmarkCreateKMSVersusLocal alternates one create through the full stack with the KMS
// sealer (test KMS over HTTP) and one with the local sealer, and reports both and their ratio.
func BenchmarkCreateKMSVersusLocal(b *testing.B) {
	srv := kmstest.New()
	defer srv.Close()
	srv.UseFromEnv(b)
	client, err := kmsseal.NewClient(context.Background(), testenv.Policy)
	if err != nil {
		b.Fatal(err)
	}
	withKMS := newHarnessWith(b, kmsseal.New(client, "alias/ai-tokens"))
	withLocal := newHarness(b)
	kmsJWT, localJWT := withKMS.manager(), withLocal.manager()
	create := func(h *harness, jwt string, i int) time.Duration {
		start := time.Now()
		req := httptest.NewRequest("PUT", fmt.Sprintf("%s/t%d", base, i), strings.NewReader(`{"name":"n","value":"sk-bench-value"}`))
		req.Header.Set("Authorization", "Bearer "+jwt)
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatal(rec.Code, rec.Body.String())
		}
		return time.Since(start)
	}
	var kmsTime, localTime time.Duration
	i := 0
	for b.Loop() {
		kmsTime += create(withKMS, kmsJWT, i)
		localTime += create(withLocal, localJWT, i)
		i++
	}
	b.ReportMetric(float64(kmsTime.Nanoseconds())/float64(b.N), "kms-ns/op")
	b.ReportMetric(float64(localTime.Nanoseconds())/float64(b.N), "local-ns/op")
	b.ReportMetric(float64(kmsTime)/float64(localTime), "kms/local")
	b.ReportMetric(float64(srv.Calls()["GenerateDataKey"])/float64(b.N), "kms-calls/create")
}
