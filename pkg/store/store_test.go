package store_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func newStore(t *testing.T) *store.Store {
	return store.New(testenv.Client(), testenv.NewTable(t))
}

var sealed = token.Sealed{KeyID: "k", Algorithm: "a", WrappedKey: []byte{1}, Nonce: []byte{2}, Ciphertext: []byte{3}, Digest: []byte{4}}

func create(t *testing.T, st *store.Store, tenant, id, rid string) {
	t.Helper()
	now := time.Now()
	if err := st.Create(context.Background(), token.Token{Tenant: tenant, ID: id, Name: "n", CreatedAt: now, ModifiedAt: now}, sealed, token.Event{RequestID: rid, At: now}); err != nil {
		t.Fatal(err)
	}
}

// A write retried after a lost response must not turn into a false conflict: the item's
// request id tells our own earlier success from somebody else's write.
func TestRetriedWritesAreRecognised(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	create(t, st, "acme", "x", "req-1")
	if err := st.Create(ctx, token.Token{Tenant: "acme", ID: "x", Name: "n", CreatedAt: time.Now()}, sealed, token.Event{RequestID: "req-1", At: time.Now()}); err != nil {
		t.Fatalf("retried create: %v", err)
	}
	if err := st.Create(ctx, token.Token{Tenant: "acme", ID: "x", Name: "n", CreatedAt: time.Now()}, sealed, token.Event{RequestID: "req-2", At: time.Now()}); token.KindOf(err) != token.Conflict {
		t.Fatalf("create by another request: %v, want conflict", err)
	}
	r := store.Update{Tenant: "acme", ID: "x", Name: new("m"), Version: 1}
	ev3 := token.Event{RequestID: "req-3", At: time.Now()}
	for attempt := range 2 {
		if err := st.Update(ctx, r, ev3); err != nil {
			t.Fatalf("rename attempt %d: %v", attempt, err)
		}
	}
	got, err := st.Get(ctx, "acme", "x")
	if err != nil || got.Version != 2 || got.Name != "m" {
		t.Fatalf("after a retried rename: %+v %v, want version 2", got, err)
	}
	// The same request sent twice (an SDK retry after a lost answer) at the version it read is
	// applied once: the second finds its own request id on the token.
	r2 := store.Update{Tenant: "acme", ID: "x", Name: new("k"), Version: 2}
	ev4 := token.Event{RequestID: "req-4", At: time.Now()}
	st.Update(ctx, r2, ev4)
	st.Update(ctx, r2, ev4)
	if got, _ := st.Get(ctx, "acme", "x"); got.Version != 3 {
		t.Fatalf("version %d after a retried unversioned rename, want 3", got.Version)
	}
	stale := store.Update{Tenant: "acme", ID: "x", Name: new("z"), Version: 1}
	if err := st.Update(ctx, stale, token.Event{RequestID: "req-5", At: time.Now()}); token.KindOf(err) != token.Conflict {
		t.Fatalf("stale version: %v", err)
	}
	missing := store.Update{Tenant: "acme", ID: "nope", Name: new("z"), Version: 1}
	if err := st.Update(ctx, missing, token.Event{RequestID: "req-6", At: time.Now()}); token.KindOf(err) != token.NotFound {
		t.Fatalf("missing: %v", err)
	}
}

func TestTenantsAreApart(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	create(t, st, "acme", "x", "r1")
	create(t, st, "globex", "y", "r2")
	if _, err := st.Get(ctx, "globex", "x"); token.KindOf(err) != token.NotFound {
		t.Fatalf("globex reads acme's token: %v", err)
	}
	res, err := st.List(ctx, "acme", 100)
	if err != nil || len(res.Tokens) != 1 || res.Tokens[0].ID != "x" {
		t.Fatalf("list acme: %+v %v", res, err)
	}
	many, err := st.GetMany(ctx, "acme", []string{"x", "y", "x"})
	if err != nil || len(many.Tokens) != 1 {
		t.Fatalf("GetMany crosses tenants or repeats: %+v %v", many, err)
	}
}

// recorder keeps every DynamoDB response body, to see which attributes a read fetched.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	r.mu.Lock()
	r.bodies = append(r.bodies, req.Header.Get("X-Amz-Target")+" "+string(body))
	r.mu.Unlock()
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

func TestReadsForShowingNeverFetchSealedValues(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	rec := &recorder{}
	client, err := store.NewClient(ctx, testenv.Endpoint(), testenv.Policy, func(o *dynamodb.Options) { o.HTTPClient = rec })
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(client, testenv.NewTable(t))
	create(t, st, "acme", "x", "r1")
	rec.bodies = nil
	st.Get(ctx, "acme", "x")
	st.List(ctx, "acme", 100)
	st.GetMany(ctx, "acme", []string{"x"})
	st.GetDigest(ctx, "acme", "x")
	if len(rec.bodies) != 4 {
		t.Fatalf("%d calls recorded", len(rec.bodies))
	}
	for _, b := range rec.bodies {
		if !strings.Contains(b, `"id"`) {
			t.Fatalf("a read returned no token: %s", b)
		}
		for _, attr := range []string{"sealCiphertext", "sealWrappedKey", "sealNonce"} {
			if strings.Contains(b, attr) {
				t.Fatalf("a read for showing fetched %s: %s", attr, b)
			}
		}
	}
	rec.bodies = nil
	if _, s, err := st.GetSealed(ctx, "acme", "x"); err != nil || len(s.Ciphertext) == 0 || !strings.Contains(rec.bodies[0], "sealCiphertext") {
		t.Fatalf("GetSealed: %+v %v", s, err)
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	client, err := store.NewClient(context.Background(), "http://127.0.0.1:1", testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(client, "t")
	ctx := context.Background()
	if _, err := st.Get(ctx, "acme", "x"); token.KindOf(err) != token.Unavailable {
		t.Fatalf("Get: %v, want unavailable", err)
	}
	if _, err := st.List(ctx, "acme", 100); token.KindOf(err) != token.Unavailable {
		t.Fatalf("List: %v, want unavailable", err)
	}
}

// Resolving records lastUsedAt at most once a minute per token, and never bumps the version.
func TestTouchLastUsedAtMostOncePerMinute(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	create(t, st, "acme", "x", "r1")
	t0 := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Time
		want time.Time
	}{
		{t0, t0},
		{t0.Add(30 * time.Second), t0}, // within the minute: no write
		{t0.Add(61 * time.Second), t0.Add(61 * time.Second)},
	}
	for i, s := range steps {
		if err := st.TouchLastUsed(ctx, "acme", "x", s.at); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, "acme", "x")
		if err != nil || !got.LastUsedAt.Equal(s.want) || got.Version != 1 {
			t.Fatalf("step %d: lastUsedAt %v version %d, want %v and 1 (%v)", i, got.LastUsedAt, got.Version, s.want, err)
		}
	}
	if err := st.TouchLastUsed(ctx, "acme", "missing", t0); err != nil {
		t.Fatalf("touching a missing token: %v", err)
	}
	if _, err := st.Get(ctx, "acme", "missing"); token.KindOf(err) != token.NotFound {
		t.Fatal("touching a missing token created it")
	}
}
