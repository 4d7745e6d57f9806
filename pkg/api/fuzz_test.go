package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzBody sends body with method to the token path through the real stack and checks what must
// hold for any input: no 5xx, a JSON error body for every error, and no value echoed back.
func fuzzBody(f *testing.F, method string, seeds []string) {
	h := newHarness(f)
	h.create("fuzzed", "Fuzzed", "sk-fuzz-stored-value")
	jwt := h.manager()
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(method, base+"/fuzzed", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+jwt)
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != rec.Code || e.Message == "" {
				t.Fatalf("%s %q: error body %s", method, body, rec.Body)
			}
		}
		if strings.Contains(rec.Body.String(), "sk-fuzz-stored-value") {
			t.Fatalf("the stored value came back")
		}
	})
}

func FuzzUpsertBody(f *testing.F) {
	fuzzBody(f, "PUT", []string{
		`{"name":"OpenAI Token","value":"sk-secret"}`, `{"name":"n"}`, `{"name":"n","metadata":{"version":1}}`,
		`{"name":"n","value":"sk-fuzz-stored-value"}`, `{"name":null}`, `[]`, `{"name":5}`, `{"metadata":{"version":-1}}`,
		"{\"name\":\"\xff\"}", `{"name":"a\u0000"}`, ``, `{`, `{"name":"n","value":"v","id":"x","extra":[1,2,{}]}`,
	})
}

func FuzzPatchBody(f *testing.F) {
	fuzzBody(f, "PATCH", []string{
		`[{"op":"REPLACE","path":"/name","value":"New"}]`, `[{"op":"add","path":"/name","value":"x"}]`,
		`[{"op":"REMOVE","path":"/name"}]`, `[{"op":"REPLACE","path":"/value","value":"x"}]`, `[]`, `{}`,
		`[{"op":"REPLACE","path":"/name","value":{"a":1}}]`, `[{"op":null,"path":null}]`, `[1,2,3]`, `null`,
	})
}
