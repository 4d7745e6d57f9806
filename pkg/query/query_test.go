package query

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"aitokens/pkg/token"
)

// docs is a small fixed set of token documents for the evaluator.
var docs = []map[string]any{
	{"id": "openai", "name": "OpenAI Token", "metadata": map[string]any{"version": 1, "createdAt": "2026-01-05T10:00:00.000Z", "modifiedAt": "2026-01-05T10:00:00.000Z", "usageCount": 0}},
	{"id": "emporix--openai", "name": "Emporix OpenAi Token", "metadata": map[string]any{"version": 3, "createdAt": "2026-01-20T10:00:00.000Z", "modifiedAt": "2026-02-01T00:00:00.000Z", "usageCount": 2, "lastUsedAt": "2026-02-02T00:00:00.000Z"}},
	{"id": "support", "name": "Support Bot", "metadata": map[string]any{"version": 2, "createdAt": "2026-02-10T00:00:00.000Z", "modifiedAt": "2026-02-11T00:00:00.000Z", "usageCount": 1}},
	{"id": "x(1)", "name": `we "quote" (parens)`, "metadata": map[string]any{"version": 10, "createdAt": "2025-12-31T23:59:59.999Z", "modifiedAt": "2026-01-01T00:00:00.000Z", "usageCount": 0}},
}

func matching(t *testing.T, q *Query) string {
	t.Helper()
	var ids []string
	for _, d := range docs {
		if q.Match(d) {
			ids = append(ids, d["id"].(string))
		}
	}
	return strings.Join(ids, ",")
}

func TestEvaluate(t *testing.T) {
	cases := []struct{ q, want string }{
		{"id:openai", "openai"},
		{`name:"OpenAI Token"`, "openai"},
		{"name:~Token", "openai,emporix--openai"},
		{"name:~(?i)openai", "openai,emporix--openai"},
		{"name:~OpenAI", "openai"},
		{"name:(~Support Bot)", "support"},
		{`name:(~\(parens\))`, "x(1)"},
		{`name:(~[)])`, "x(1)"},
		{`name:"we \"quote\" (parens)"`, "x(1)"},
		{"metadata.version:>=2", "emporix--openai,support,x(1)"},
		{"metadata.version:<2", "openai"},
		{"metadata.version:(>1 AND <10)", "emporix--openai,support"},
		{"metadata.version:3", "emporix--openai"},
		{"metadata.version:3.0", "emporix--openai"},
		{`metadata.createdAt:>"2026-01-10T00:00:00Z"`, "emporix--openai,support"},
		{`metadata.createdAt:(>="2026-01-01T00:00:00Z" AND <"2026-02-01T00:00:00Z")`, "openai,emporix--openai"},
		{"metadata.createdAt:<2026-01-01", "x(1)"},
		{`metadata.createdAt:"2026-01-05T11:00:00+01:00"`, "openai"},
		{`id:(openai,"emporix--openai")`, "openai,emporix--openai"},
		{"id:(openai, support)", "openai,support"},
		{"metadata.lastUsedAt:null", "openai,support,x(1)"},
		{"metadata.lastUsedAt:exists", "emporix--openai"},
		{"metadata.lastUsedAt:missing", "openai,support,x(1)"},
		{"id:~openai name:~Emporix", "emporix--openai"},
		{"metadata.version:>1 metadata.version:<10", "emporix--openai,support"},
		{"compoundLogicalQuery:((id:openai) OR (id:support))", "openai,support"},
		{"compoundLogicalQuery:((name:~Token metadata.version:>1) OR (id:support))", "emporix--openai,support"},
		{"compoundLogicalQuery:((id:openai) OR ((name:~Bot) AND (metadata.version:2)))", "openai,support"},
		{"compoundLogicalQuery:((id:openai) OR (id:support)) metadata.version:1", "openai"},
		{"metadata.usageCount:0", "openai,x(1)"},
		{"id:nothing", ""},
		{"  id:openai  ", "openai"},
	}
	for _, c := range cases {
		q, err := Parse(c.q)
		if err != nil {
			t.Errorf("%s: %v", c.q, err)
			continue
		}
		if got := matching(t, q); got != c.want {
			t.Errorf("%s: got %q, want %q", c.q, got, c.want)
		}
		// The re-printed query means the same.
		again, err := Parse(q.String())
		if err != nil {
			t.Errorf("%s: re-printed %s does not parse: %v", c.q, q.String(), err)
		} else if got := matching(t, again); got != c.want {
			t.Errorf("%s: re-printed %s gives %q", c.q, q.String(), got)
		}
	}
}

func TestErrorsNameProblemAndPosition(t *testing.T) {
	cases := []struct{ q, want string }{
		{"foo:bar", `unknown field "foo" at position 1`},
		{"id:a value:x", `unknown field "value" at position 6`},
		{"name:(~abc", "missing ) at position 6"},
		{"id:(a,b", "missing ) at position 4"},
		{"id:a)", "unexpected ) at position 5"},
		{"compoundLogicalQuery:((id:a) OR (id:b)", "missing ) at position"},
		{"name:~a(b", "bad regular expression"},
		{"name:~", "empty regular expression at position 7"},
		{"id:", "empty value at position 4"},
		{`id:"abc`, "unterminated quoted value at position 4"},
		{"metadata.version:>abc", `"abc" is not at position 19`},
		{"metadata.version:~1", "~ matches text, and metadata.version is a number at position 19"},
		{"name:>5", "compares numbers or dates, and name is a string at position 6"},
		{"metadata.createdAt:>yesterday", "is a date"},
		{"expiresAt:2027-01-01T00:00:00.1234567891Z", "at most 9 fractional digits, or YYYY-MM-DD), and \"2027-01-01T00:00:00.1234567891Z\" is not at position 11"},
		{"expiresAt:(>=2027-01-01T00:00:00.123456789Z AND <2027-01-01T00:00:00.1234567890Z)", "is not at position 50"},
		{"expiresAt:2027-01-01T00:00:00.123456789+05:30", ""},
		{"metadata.version:(>1 OR <3)", "expected AND or ) in a range at position 22"},
		{"id", `expected : after field "id" at position 3`},
		{":x", "expected a field name at position 1"},
		{"name:a:b", ""}, // a bare value may hold ':'
		{"id:a:b", "id is a token id (^[A-Za-z0-9_-]{1,66}$), and this value is not at position 4"},
		{"id:" + strings.Repeat("x", 100), "id is a token id"},
		{"id:(ok," + strings.Repeat("x", 67) + ")", "and this value is not at position 8"},
		{`name:x id:"a b"`, "and this value is not at position 11"},
		{"compoundLogicalQuery:((id:a) OR (id:a.b))", "and this value is not at position 37"},
		{"name:~" + strings.Repeat("a", MaxRegexLength+1), "longer than 256 bytes"},
		{strings.Repeat("id:a ", MaxQueryLength/5+1), "longer than 2048 bytes"},
		{strings.Repeat("id:a ", MaxConditions+1), "more than 64 conditions"},
		{"compoundLogicalQuery:" + strings.Repeat("(", MaxDepth+1) + "id:a" + strings.Repeat(")", MaxDepth+1), "nested deeper"},
		{"id:\xff", "not valid UTF-8"},
		{"idé:x", "expected : after field"},
	}
	for _, c := range cases {
		_, err := Parse(c.q)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.q, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", c.q, c.want)
			continue
		}
		e := err.(*token.Error)
		if e.Kind != token.Invalid || !strings.Contains(e.Message, c.want) || !strings.Contains(e.Message, "position") {
			t.Errorf("%s: %q, want it to contain %q and a position", c.q, e.Message, c.want)
		}
	}
}

func TestIDs(t *testing.T) {
	cases := []struct {
		q    string
		ids  string
		keys bool
	}{
		{"id:openai", "openai", true},
		{"id:(a,b) name:~x", "a,b", true},
		{"name:~x", "", false},
		{"id:~open", "", false},
		{"compoundLogicalQuery:((id:a) OR (id:b))", "", false},
	}
	for _, c := range cases {
		q, err := Parse(c.q)
		if err != nil {
			t.Fatal(err)
		}
		ids, ok := q.IDs()
		if ok != c.keys || strings.Join(ids, ",") != c.ids {
			t.Errorf("%s: %v %v", c.q, ids, ok)
		}
	}
	var none *Query
	if _, ok := none.IDs(); ok || !none.Match(docs[0]) {
		t.Error("the empty query must match everything and name no ids")
	}
}

// seeds is the fuzz corpus: every form of the language and some broken ones.
var seeds = []string{
	"id:openai", `name:"OpenAI Token"`, "name:~Support", "name:(~Open AI)", "metadata.version:>=2",
	`metadata.createdAt:(>="2026-01-01T00:00:00Z" AND <"2026-02-01T00:00:00Z")`, `id:(openai,"emporix--openai")`,
	"metadata.lastUsedAt:null", "name:exists", "name:missing", "id:openai name:~Token",
	"compoundLogicalQuery:((id:a name:~b) OR (metadata.version:<3))", `name:(~[)]\))`, "id:(", "name:~(", `"`,
	"compoundLogicalQuery:(((((id:a)))))", "metadata.version:(>1 AND", "))((", "id:a\tname:b",
}

// steps parses q and returns the parser's loop count.
func steps(q string) int {
	p := &parser{src: q}
	p.conjunction(false)
	return p.steps
}

func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		parsed, err := Parse(q)
		if err != nil {
			e, ok := err.(*token.Error)
			if !ok || e.Kind != token.Invalid || !strings.Contains(e.Message, "position") {
				t.Fatalf("%q: error without a position: %v", q, err)
			}
			return
		}
		// Linear: the parser's loops advance through the input, a bounded number of times per byte.
		if n := steps(q); len(q) <= MaxQueryLength && n > 4*len(q)+16 {
			t.Fatalf("%q: %d steps for %d bytes", q, n, len(q))
		}
		if parsed == nil {
			return
		}
		again, err := Parse(parsed.String())
		if err != nil {
			if utf8.ValidString(q) && len(parsed.String()) <= MaxQueryLength {
				t.Fatalf("%q re-printed as %q does not parse: %v", q, parsed.String(), err)
			}
			return
		}
		for _, d := range docs {
			if parsed.Match(d) != again.Match(d) {
				t.Fatalf("%q and its re-print %q disagree on %v", q, parsed.String(), d["id"])
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := Parse(seeds[n%7]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "queries/s")
}

func ExampleParse() {
	q, _ := Parse(`name:(~Open AI) metadata.version:>=2`)
	fmt.Println(q)
	// Output: name:(~Open AI) metadata.version:>=2
}
