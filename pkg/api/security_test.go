package api_test

// The security and reliability suite (docs/security.md): attacks, bad input, races and faults
// against the real handler stack on DynamoDB Local, each group counting the cases it tried and
// the ones that failed, and a scan of every log line and response for secrets at the end.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/golang-jwt/jwt/v5"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// tally counts the cases of one group.
type tally struct {
	mu            sync.Mutex
	tried, failed int
}

type securitySuite struct {
	t       *testing.T
	h       *harness
	kms     *kmstest.Server
	secrets []string // values stored during the suite: none may leak
	jwts    []string
	groups  map[string]*tally
	order   []string
}

// check records one case of a group; a failed case fails the test with its reason.
func (s *securitySuite) check(t *testing.T, group, name string, ok bool, format string, args ...any) {
	t.Helper()
	g := s.groups[group]
	if g == nil {
		g = &tally{}
		s.groups[group] = g
		s.order = append(s.order, group)
	}
	g.mu.Lock()
	g.tried++
	if !ok {
		g.failed++
	}
	g.mu.Unlock()
	if !ok {
		t.Errorf("[%s] %s: "+format, append([]any{group, name}, args...)...)
	}
}

func (s *securitySuite) jwt(claims jwt.MapClaims, method jwt.SigningMethod, key any, kid string) string {
	s.t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	signed, err := tok.SignedString(key)
	if err != nil {
		s.t.Fatal(err)
	}
	s.jwts = append(s.jwts, signed)
	return signed
}

// jwtWithHeader signs claims with RS256 under the given extra header fields.
func (s *securitySuite) jwtWithHeader(claims jwt.MapClaims, key *rsa.PrivateKey, header map[string]any) string {
	s.t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	signed, err := tok.SignedString(key)
	if err != nil {
		s.t.Fatal(err)
	}
	s.jwts = append(s.jwts, signed)
	return signed
}

func (s *securitySuite) claims(extra map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": devkeys.Issuer, "aud": devkeys.Audience, "sub": "attacker", "tenant": "acme",
		"scope": auth.ScopeRead + " " + auth.ScopeManage, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestSecuritySuite(t *testing.T) {
	h, kms := newKMSHarness(t)
	s := &securitySuite{t: t, h: h, kms: kms, groups: map[string]*tally{}}
	s.store("acme", "openai", "OpenAI Token", "sk-acme-secret-value-0001")
	s.store("globex", "secret", "Globex Secret", "sk-globex-secret-value-0002")

	t.Run("authentication", s.authentication)
	t.Run("authorization", s.authorization)
	t.Run("bad input", s.badInput)
	t.Run("races and faults", s.racesAndFaults)
	t.Run("resource limits", s.resourceLimits)
	t.Run("secrets never leak", s.leakScan)

	for _, name := range s.order {
		g := s.groups[name]
		t.Logf("security group %-20s %3d cases tried, %d failed", name, g.tried, g.failed)
	}
}

func (s *securitySuite) store(tenant, id, name, value string) {
	s.t.Helper()
	s.secrets = append(s.secrets, value)
	jwt := s.h.jwt(tenant, auth.ScopeManage)
	s.jwts = append(s.jwts, jwt)
	body, _ := json.Marshal(map[string]string{"name": name, "value": value})
	if res := s.h.do("PUT", "/ai-service/"+tenant+"/agentic/tokens/"+id, string(body), jwt); res.status != 201 {
		s.t.Fatalf("create %s/%s: %d %s", tenant, id, res.status, res.body)
	}
}

// authentication: every forged, stale or misdirected token is a 401 with the fault body.
func (s *securitySuite) authentication(t *testing.T) {
	trusted := s.h.key
	kid := devkeys.KeyID(&trusted.PublicKey)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustPKIX(&trusted.PublicKey)})
	valid := s.jwt(s.claims(nil), jwt.SigningMethodRS256, trusted, kid)
	parts := strings.Split(valid, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(decodeSegment(parts[1]), `"acme"`, `"globex"`, 1)))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, s.claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	s.jwts = append(s.jwts, none)

	cases := []struct {
		name, header, path string
		expired            bool
	}{
		{"no token", "", "", false},
		{"malformed", "Bearer not-a-jwt", "", false},
		{"three garbage segments", "Bearer a.b.c", "", false},
		{"empty bearer", "Bearer ", "", false},
		{"alg none", "Bearer " + none, "", false},
		{"HS256 signed with the public key (algorithm confusion)", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodHS256, pubPEM, kid), "", false},
		{"unknown kid", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, other, "unknown-kid"), "", false},
		{"kid with a path", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, other, "../../../../etc/passwd"), "", false},
		{"kid with a URL", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, other, "https://attacker.example/jwks.json"), "", false},
		{"no kid", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, other, ""), "", false},
		{"no kid, signed by the trusted key", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, trusted, ""), "", false},
		{"iat in the future", "Bearer " + s.jwt(s.claims(map[string]any{"iat": time.Now().Add(time.Hour).Unix()}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"crit header naming an unknown extension", "Bearer " + s.jwtWithHeader(s.claims(nil), trusted, map[string]any{"kid": kid, "crit": []string{"exp-ext"}, "exp-ext": true}), "", false},
		{"ES256 signature (API Gateway takes RSA only)", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodES256, ecKey, kid), "", false},
		{"wrong issuer", "Bearer " + s.jwt(s.claims(map[string]any{"iss": "https://attacker.example/"}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"wrong audience", "Bearer " + s.jwt(s.claims(map[string]any{"aud": "another-api"}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"expired", "Bearer " + s.jwt(s.claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), jwt.SigningMethodRS256, trusted, kid), "", true},
		{"not yet valid", "Bearer " + s.jwt(s.claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"no expiry", "Bearer " + s.jwt(s.claims(map[string]any{"exp": nil}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"signed by another key under the trusted kid", "Bearer " + s.jwt(s.claims(nil), jwt.SigningMethodRS256, other, kid), "", false},
		{"scope of the wrong type", "Bearer " + s.jwt(s.claims(map[string]any{"scope": 42}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"scp of the wrong type", "Bearer " + s.jwt(s.claims(map[string]any{"scp": []any{1, 2}}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"tenant claim of the wrong type", "Bearer " + s.jwt(s.claims(map[string]any{"tenant": []string{"acme"}}), jwt.SigningMethodRS256, trusted, kid), "", false},
		{"payload changed after signing", "Bearer " + parts[0] + "." + tamperedPayload + "." + parts[2], "", false},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + ".", "", false},
		{"Basic scheme", "Basic " + valid, "", false},
		{"token only in the query string", "", "?access_token=" + valid, false},
	}
	for _, c := range cases {
		for _, route := range []struct{ method, path, body string }{
			{"GET", base + "/openai", ""},
			{"PUT", base + "/openai", `{"name":"hijacked"}`},
		} {
			req := httptest.NewRequest(route.method, route.path+c.path, strings.NewReader(route.body))
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			rec := httptest.NewRecorder()
			s.h.handler.ServeHTTP(rec, req)
			s.h.bodies.Write(append(rec.Body.Bytes(), '\n'))
			s.h.sent.Add(1)
			var fault api.Fault
			json.Unmarshal(rec.Body.Bytes(), &fault)
			want := "Invalid access token"
			if c.expired {
				want = "Access Token expired"
			}
			s.check(t, "authentication", c.name, rec.Code == 401 && fault.Fault.FaultString == want && fault.Fault.Detail.ErrorCode != "" &&
				rec.Header().Get("Content-Type") == "application/json",
				"%s: %d %s", route.method, rec.Code, rec.Body)
		}
	}
	if doc := s.h.getDoc("openai"); doc["name"] != "OpenAI Token" {
		t.Fatalf("an unauthenticated write got through: %v", doc)
	}
}

func decodeSegment(seg string) string {
	b, _ := base64.RawURLEncoding.DecodeString(seg)
	return string(b)
}

func mustPKIX(pub *rsa.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return b
}

// routeBodies is the request body each route is tried with; a route that takes a body must
// have one here, so that a new route cannot slip past the suite untried.
var routeBodies = map[string]string{
	"search-tokens": `{"q":"id:openai"}`,
	"upsert-token":  `{"name":"hijacked"}`,
	"patch-token":   `[{"op":"REPLACE","path":"/name","value":"hijacked"}]`,
}

// routeCalls is one request per route of the route table, on tenant acme's token openai.
func routeCalls() []struct{ function, method, path, body, scope string } {
	fill := strings.NewReplacer("{tenant}", "acme", "{tokenId}", "openai", "{kind}", "agent", "{refId}", "evil")
	var calls []struct{ function, method, path, body, scope string }
	for _, r := range api.Routes {
		calls = append(calls, struct{ function, method, path, body, scope string }{
			r.Function, r.Method, fill.Replace(r.Path), routeBodies[r.Function], r.Scope})
	}
	return calls
}

func TestEveryRouteWithABodyHasASample(t *testing.T) {
	t.Parallel()
	for _, r := range api.Routes {
		if _, ok := routeBodies[r.Function]; (r.Method == "POST" || r.Method == "PATCH" || r.Function == "upsert-token") && !ok {
			t.Errorf("route %s takes a body: add one to routeBodies", r.Function)
		}
	}
}

// authorization: wrong scope, another tenant, near-miss tenants and ids that try to cross
// tenants are refused, and nothing changes.
func (s *securitySuite) authorization(t *testing.T) {
	calls := routeCalls()
	if len(calls) != len(api.Routes) {
		t.Fatalf("the suite covers %d routes, the route table has %d", len(calls), len(api.Routes))
	}
	before := scanTable(t, s.h)
	other := map[string]string{auth.ScopeRead: auth.ScopeManage, auth.ScopeManage: auth.ScopeRead}
	for _, c := range calls {
		for _, who := range []struct {
			name, jwt string
		}{
			{"wrong scope", s.h.jwt("acme", other[c.scope])},
			{"no scope", s.h.jwt("acme")},
			{"another tenant's token", s.h.jwt("globex", auth.ScopeRead, auth.ScopeManage)},
			{"tenant differing in case", s.h.jwt("ACME", auth.ScopeRead, auth.ScopeManage)},
			{"tenant with a trailing space", s.h.jwt("acme ", auth.ScopeRead, auth.ScopeManage)},
			{"no tenant claim", s.h.jwt("", auth.ScopeRead, auth.ScopeManage)},
		} {
			res := s.h.do(c.method, c.path, c.body, who.jwt)
			s.check(t, "authorization", c.function+": "+who.name, res.status == 403, "%d %s", res.status, res.body)
		}
	}
	s.check(t, "authorization", "nothing changed", reflect.DeepEqual(before, scanTable(t, s.h)), "a refused request changed the store")

	acme := s.h.manager()
	for _, path := range []string{
		"/acme%23openai", "/..%2Fglobex", "/..%2F..%2Fglobex%2Fagentic%2Ftokens%2Fsecret", "/secret%23token%23x",
		"/%2e%2e", "/../../globex/agentic/tokens/secret", "/./secret", "/secret/", "/token%23secret",
	} {
		res := s.h.do("GET", base+path, "", acme)
		s.check(t, "authorization", "id crossing tenants "+path, (res.status == 400 || res.status == 404) &&
			!strings.Contains(string(res.body), "Globex"), "%d %s", res.status, res.body)
	}
	list := s.h.do("GET", base+"?pageSize=1000", "", acme)
	search := s.h.do("POST", base+"/search", `{"q":"compoundLogicalQuery:((id:secret) OR (name:~Globex))"}`, acme)
	s.check(t, "authorization", "list and search stay in the tenant", !strings.Contains(string(list.body), "secret") &&
		string(search.body) == "[]\n", "list %s search %s", list.body, search.body)
}

func serviceList(q *query.Query, sortKeys []query.SortKey) service.List {
	return service.List{Tenant: "acme", Query: q, Sort: sortKeys, Page: query.Page{Number: 1, Size: query.DefaultPageSize}}
}

// badInput: each malformed request is a 4xx with the documented body and leaves the store as it was.
func (s *securitySuite) badInput(t *testing.T) {
	mgr := s.h.manager()
	oneMiB := `{"name":"n","value":"` + strings.Repeat("v", 1<<20) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		contentType              string // application/json when empty
	}{
		{"malformed JSON", "PUT", "/new", `{"name":"n",`, 400, ""},
		{"trailing garbage", "PUT", "/new", `{"name":"n","value":"v"} x`, 400, ""},
		{"wrong type for name", "PUT", "/new", `{"name":["n"],"value":"v"}`, 400, ""},
		{"wrong type for value", "PUT", "/new", `{"name":"n","value":{"a":1}}`, 400, ""},
		{"null name", "PUT", "/new", `{"name":null,"value":"v"}`, 400, ""},
		{"empty name", "PUT", "/new", `{"name":"","value":"v"}`, 400, ""},
		{"body of 64 KiB + 1", "PUT", "/new", `{"name":"n","value":"` + strings.Repeat("v", 64*1024-22) + `"}`, 413, ""},
		{"a 1 MiB value", "PUT", "/new", oneMiB, 413, ""},
		{"value over 16 KiB", "PUT", "/new", `{"name":"n","value":"` + strings.Repeat("v", 16*1024+1) + `"}`, 400, ""},
		{"invalid UTF-8", "PUT", "/new", "{\"name\":\"\xc3\x28\",\"value\":\"v\"}", 400, ""},
		{"control characters in the name", "PUT", "/new", `{"name":"a\u0000b","value":"v"}`, 400, ""},
		{"a newline in the name", "PUT", "/new", `{"name":"a\nb","value":"v"}`, 400, ""},
		{"patch not an array", "PATCH", "/openai", `{"op":"REPLACE","path":"/name","value":"x"}`, 400, ""},
		{"patch unknown op", "PATCH", "/openai", `[{"op":"COPY","path":"/name","value":"x"}]`, 400, ""},
		{"patch path other than /name", "PATCH", "/openai", `[{"op":"REPLACE","path":"/metadata/createdAt","value":"x"}]`, 400, ""},
		{"patch of the value", "PATCH", "/openai", `[{"op":"ADD","path":"/value","value":"sk-new"}]`, 400, ""},
		{"huge pageSize", "GET", "?pageSize=99999999999999999999", "", 400, ""},
		{"negative pageNumber", "GET", "?pageNumber=-3", "", 400, ""},
		{"bad sort", "GET", "?sort=name:sideways", "", 400, ""},
		{"sort on the value", "GET", "?sort=value", "", 400, ""},
		{"bad fields", "GET", "?fields=id,sealCiphertext", "", 400, ""},
		{"bad q", "GET", "?q=" + url.QueryEscape("name:(~x"), "", 400, ""},
		{"search body not an object", "POST", "/search", `"name:x"`, 400, ""},
		{"bad force", "DELETE", "/openai?force=yes-please", "", 400, ""},
		{"force=1", "DELETE", "/openai?force=1", "", 400, ""},
		{"force=t", "DELETE", "/openai?force=t", "", 400, ""},
		{"force=TRUE", "DELETE", "/openai?force=TRUE", "", 400, ""},
		{"two name keys", "PUT", "/new", `{"name":"a","name":"b","value":"sk-dup-0001"}`, 400, ""},
		{"two value keys", "PUT", "/new", `{"name":"a","value":"sk-dup-0002","value":"sk-dup-0003"}`, 400, ""},
		{"keys equal but for case", "PUT", "/new", `{"name":"a","Name":"b","value":"sk-dup-0004"}`, 400, ""},
		{"two version keys in metadata", "PUT", "/openai", `{"name":"a","metadata":{"version":1,"version":2}}`, 400, ""},
		{"two path keys in a patch", "PATCH", "/openai", `[{"op":"REPLACE","path":"/value","path":"/name","value":"x"}]`, 400, ""},
		{"a lone high surrogate in the value", "PUT", "/new", `{"name":"n","value":"sk-\ud800-lone"}`, 400, ""},
		{"a lone low surrogate in the value", "PUT", "/new", `{"name":"n","value":"sk-\udc00-lone"}`, 400, ""},
		{"a high surrogate before a non-surrogate", "PUT", "/new", `{"name":"n","value":"sk-\ud800\u0041"}`, 400, ""},
		{"a lone surrogate in the name", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"\udfff"}]`, 400, ""},
		{"text/plain body", "PUT", "/new", `{"name":"n","value":"sk-plain-0005"}`, 415, "text/plain"},
		{"form-encoded body", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"x"}]`, 415, "application/x-www-form-urlencoded"},
		{"XML search", "POST", "/search", `{"q":"id:openai"}`, 415, "application/xml"},
		{"metadata.version 1.5", "PUT", "/openai", `{"name":"a","metadata":{"version":1.5}}`, 400, ""},
		{"metadata.version as a string", "PUT", "/openai", `{"name":"a","metadata":{"version":"1"}}`, 400, ""},
		{"metadata.version 0", "PUT", "/openai", `{"name":"a","metadata":{"version":0}}`, 400, ""},
		{"metadata.version 1e300", "PUT", "/openai", `{"name":"a","metadata":{"version":1e300}}`, 400, ""},
		{"q id of 100 characters", "GET", "?q=id:" + strings.Repeat("x", 100), "", 400, ""},
		{"q IN list with a bad id", "GET", "?q=" + url.QueryEscape("id:(openai,"+strings.Repeat("y", 67)+")"), "", 400, ""},
		{"q id with a dot", "POST", "/search", `{"q":"id:a.b"}`, 400, ""},
	}
	for _, c := range cases {
		before := scanTable(t, s.h)
		res := s.h.do(c.method, base+c.path, c.body, mgr, "Content-Type", cmp.Or(c.contentType, "application/json"))
		var e struct {
			Code    int    `json:"code"`
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		json.Unmarshal(res.body, &e)
		s.check(t, "bad input", c.name, res.status == c.status && e.Code == c.status && e.Status != "" && e.Message != "" &&
			reflect.DeepEqual(before, scanTable(t, s.h)), "%d %.200s", res.status, res.body)
	}
}

// racesAndFaults: concurrent writers lose no update, and a failing dependency writes nothing.
func (s *securitySuite) racesAndFaults(t *testing.T) {
	h, mgr := s.h, s.h.manager()

	// N writers with the same version: exactly one wins, and its write is the one stored.
	h.do("PUT", base+"/race", `{"name":"start","value":"sk-race-value-0003"}`, mgr)
	s.secrets = append(s.secrets, "sk-race-value-0003")
	const writers = 16
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = h.do("PUT", base+"/race", fmt.Sprintf(`{"name":"w%d","metadata":{"version":1}}`, i), mgr).status
		}()
	}
	wg.Wait()
	winners, conflicts := 0, 0
	winner := -1
	for i, st := range statuses {
		switch st {
		case 204:
			winners++
			winner = i
		case 409:
			conflicts++
		}
	}
	doc := h.getDoc("race")
	s.check(t, "races and faults", "concurrent versioned PUTs", winners == 1 && conflicts == writers-1 &&
		doc["name"] == fmt.Sprintf("w%d", winner) && doc["metadata"].(map[string]any)["version"] == 2.0,
		"statuses %v, stored %v", statuses, doc)

	// Create racing create of one id with different values: one 201, one stored value.
	values := make([]string, 8)
	statuses = make([]int, len(values))
	for i := range values {
		values[i] = fmt.Sprintf("sk-create-race-%d-secret", i)
		s.secrets = append(s.secrets, values[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = h.do("PUT", base+"/created-twice", `{"name":"n","value":"`+values[i]+`"}`, mgr).status
		}()
	}
	wg.Wait()
	created := 0
	okOthers := true
	for i, st := range statuses {
		if st == 201 {
			created++
			winner = i
		} else if st != 409 && st != 400 {
			okOthers = false
		}
	}
	stored, err := h.svc.Resolve(context.Background(), "acme", "created-twice", nil, "test-resolve")
	s.check(t, "races and faults", "create racing create", created == 1 && okOthers && err == nil && string(stored) == values[winner],
		"statuses %v, resolve %v", statuses, err)

	// Patch racing delete: no 5xx, and a patch never brings a deleted token back.
	for round := range 10 {
		id := fmt.Sprintf("pd-%d", round)
		h.do("PUT", base+"/"+id, `{"name":"n","value":"sk-patch-delete-0004"}`, mgr)
		var patchStatus, deleteStatus int
		wg.Add(2)
		go func() {
			defer wg.Done()
			patchStatus = h.do("PATCH", base+"/"+id, `[{"op":"REPLACE","path":"/name","value":"p"}]`, mgr).status
		}()
		go func() { defer wg.Done(); deleteStatus = h.do("DELETE", base+"/"+id, "", mgr).status }()
		wg.Wait()
		_, err := h.store.Get(context.Background(), "acme", id)
		s.check(t, "races and faults", "patch racing delete "+id, (patchStatus == 204 || patchStatus == 404) && deleteStatus == 204 && err != nil,
			"patch %d delete %d, token still there: %v", patchStatus, deleteStatus, err == nil)
	}
	s.secrets = append(s.secrets, "sk-patch-delete-0004")

	// DynamoDB throttling: a short burst is absorbed by the SDK's retries; a lasting one is a 503
	// with nothing half-written.
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	throttled := newHarnessFrom(t, stack{client: client, table: h.table, sealer: h.sealer, shareWith: h})
	proxy.Throttle(1)
	res := throttled.do("GET", base+"/openai", "", throttled.manager())
	s.check(t, "races and faults", "DynamoDB throttled once", res.status == 200, "%d %s", res.status, res.body)
	before := scanTable(t, h)
	proxy.Throttle(-1)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/throttled", `{"name":"n","value":"sk-throttled-0005"}`},
		{"PUT", "/openai", `{"name":"renamed while throttled"}`},
		{"PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"x"}]`},
		{"DELETE", "/openai", ``},
		{"GET", "", ``},
	} {
		res := throttled.do(c.method, base+c.path, c.body, throttled.manager())
		s.check(t, "races and faults", "DynamoDB throttling "+c.method+" "+c.path, res.status == 503 && res.errorBody(t).Code == 503, "%d %s", res.status, res.body)
	}
	proxy.Throttle(0)
	s.secrets = append(s.secrets, "sk-throttled-0005")
	s.check(t, "races and faults", "nothing written while throttled", reflect.DeepEqual(before, scanTable(t, h)), "the store changed")

	// DynamoDB unreachable.
	down, err := store.NewClient(context.Background(), "http://127.0.0.1:1", testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	unreachable := newHarnessFrom(t, stack{client: down, table: h.table, sealer: h.sealer, shareWith: h})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/unreachable", `{"name":"n","value":"sk-unreachable-0006"}`},
		{"GET", "/openai", ``},
	} {
		res := unreachable.do(c.method, base+c.path, c.body, unreachable.manager())
		s.check(t, "races and faults", "DynamoDB unreachable "+c.method, res.status == 503, "%d %s", res.status, res.body)
	}
	s.secrets = append(s.secrets, "sk-unreachable-0006")

	// KMS failing: 503 and nothing written.
	before = scanTable(t, h)
	s.kms.Throttle(-1)
	res = h.do("PUT", base+"/kms-down", `{"name":"n","value":"sk-kms-down-0007"}`, mgr)
	s.kms.Throttle(0)
	s.secrets = append(s.secrets, "sk-kms-down-0007")
	s.check(t, "races and faults", "KMS failing", res.status == 503 && reflect.DeepEqual(before, scanTable(t, h)), "%d %s", res.status, res.body)

	// A request cancelled mid-way (while KMS seals the value) leaves the store as it was.
	ctx, cancel := context.WithCancel(context.Background())
	s.kms.OnCall(func(string) { cancel() })
	req := httptest.NewRequestWithContext(ctx, "PUT", base+"/cancelled", strings.NewReader(`{"name":"n","value":"sk-cancelled-0008"}`))
	req.Header.Set("Authorization", "Bearer "+mgr)
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	s.kms.OnCall(nil)
	s.secrets = append(s.secrets, "sk-cancelled-0008")
	s.h.bodies.Write(rec.Body.Bytes())
	s.check(t, "races and faults", "request cancelled mid-way", rec.Code >= 400 && reflect.DeepEqual(before, scanTable(t, h)), "%d %s", rec.Code, rec.Body)
}

// resourceLimits: every documented limit is enforced.
func (s *securitySuite) resourceLimits(t *testing.T) {
	mgr := s.h.manager()
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"body limit", "PUT", base + "/big", `{"name":"n","value":"` + strings.Repeat("x", 70000) + `"}`, 413},
		{"search body limit", "POST", base + "/search", `{"q":"` + strings.Repeat("x", 70000) + `"}`, 413},
		{"query length", "GET", base + "?q=" + url.QueryEscape(strings.Repeat("id:a ", 410)), "", 400},
		{"regex length", "GET", base + "?q=" + url.QueryEscape("name:~"+strings.Repeat("a", 257)), "", 400},
		{"conditions", "GET", base + "?q=" + url.QueryEscape(strings.Repeat("id:a ", 65)), "", 400},
		{"nesting", "GET", base + "?q=" + url.QueryEscape("compoundLogicalQuery:"+strings.Repeat("(", 9)+"id:a"+strings.Repeat(")", 9)), "", 400},
		{"IN list", "GET", base + "?q=" + url.QueryEscape("id:("+strings.Repeat("a,", 100)+"a)"), "", 400},
		{"page size", "GET", base + "?pageSize=1001", "", 400},
		{"name length", "PUT", base + "/long", `{"name":"` + strings.Repeat("n", 257) + `","value":"v"}`, 400},
	} {
		res := s.h.do(c.method, c.path, c.body, mgr)
		s.check(t, "resource limits", c.name, res.status == c.status, "%d %.200s", res.status, res.body)
	}
	// A query no index answers reads every token's listing attributes in pages of
	// store.ScanPageItems, whatever the tenant's size (no bound on it: `make bench-scale` reads
	// 100,000); it is refused as soon as the pages so far say the rest does not fit in the
	// request's time, here on a clock on which every reading is an hour later.
	const tokens = store.ScanPageItems + 100
	table := testenv.NewTable(t)
	seedTokens(t, table, tokens)
	big := newHarnessFrom(t, stack{table: table, sealer: s.h.sealer, shareWith: s.h})
	q, _ := query.Parse("name:~Support")
	sortKeys, _ := query.ParseSort("")
	res, err := big.svc.List(context.Background(), serviceList(q, sortKeys))
	s.check(t, "resource limits", "a tenant beyond one page of a scan is read whole", err == nil && res.ItemsRead >= tokens && res.Total == tokens/10,
		"read %d, matched %d, %v", res.ItemsRead, res.Total, err)
	var hours atomic.Int64
	slowClock := func() time.Time { return time.Unix(0, 0).Add(time.Duration(hours.Add(1)) * time.Hour) }
	slow := newHarnessFrom(t, stack{table: table, sealer: s.h.sealer, now: slowClock, shareWith: s.h})
	over := slow.do("GET", base+"?q=name:~Support", "", slow.jwt("acme", auth.ScopeRead))
	s.check(t, "resource limits", "a scan that cannot finish in time is refused", over.status == 400 &&
		over.errorBody(t).Details[0].Field == "q" && strings.Contains(over.errorBody(t).Message, fmt.Sprintf("tenant's %d tokens", tokens)),
		"%d %s", over.status, over.body)
}

// leakScan looks through every log line, response body and header of the suite for a stored
// value, a JWT, a KMS data key or a stored ciphertext, in plain or base64.
func (s *securitySuite) leakScan(t *testing.T) {
	var needles [][]byte
	for _, v := range s.secrets {
		needles = append(needles, []byte(v))
	}
	for _, j := range s.jwts {
		needles = append(needles, []byte(j), []byte(strings.Split(j, ".")[2]))
	}
	for _, k := range s.kms.DataKeys() {
		needles = append(needles, k, []byte(base64.StdEncoding.EncodeToString(k)))
	}
	for _, it := range scanTable(t, s.h) {
		for _, attr := range []string{"sealCiphertext", "sealWrappedKey", "sealDigest"} {
			if b, ok := it[attr].(*types.AttributeValueMemberB); ok {
				needles = append(needles, b.Value, []byte(base64.StdEncoding.EncodeToString(b.Value)))
			}
		}
	}
	logs := strings.Split(strings.TrimSpace(s.h.logs.String()), "\n")
	haystacks := map[string][]string{"log line": logs, "response": strings.Split(s.h.bodies.String(), "\n")}
	for kind, lines := range haystacks {
		leaks := 0
		for _, line := range lines {
			for _, n := range needles {
				if len(n) >= 8 && bytes.Contains([]byte(line), n) {
					leaks++
					t.Errorf("a secret reached a %s: %.120s", kind, line)
					break
				}
			}
		}
		s.check(t, "secrets never leak", kind+"s", leaks == 0, "%d leaks", leaks)
	}
	t.Logf("leak scan: %d log lines and %d responses (bodies and headers) checked against %d secrets", len(logs), s.h.sent.Load(), len(needles))
}
