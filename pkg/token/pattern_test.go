package token

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

var patterns = []string{TenantPattern, IDPattern, PrefixPattern, RefIDPattern}

// Every pattern of the service matches exactly what the regexp package matches: strings of every
// length around the bounds, made of the class's characters and of characters just outside it.
func TestPatternsMatchRegexp(t *testing.T) {
	alphabet := []string{"a", "z", "A", "Z", "0", "9", "_", "-", ".", ":", "/", " ", "\n", "é", "\x00", "\xff", "`", "{", "@", "["}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, expr := range patterns {
		re, p := regexp.MustCompile(expr), mustPattern(expr)
		check := func(s string) {
			if got, want := p.MatchString(s), re.MatchString(s); got != want {
				t.Fatalf("%s on %q: %v, regexp says %v", expr, s, got, want)
			}
		}
		for n := 0; n <= 130; n++ {
			for _, a := range alphabet {
				check(strings.Repeat(a, n))
				check("a" + strings.Repeat(a, n))
				check(strings.Repeat("a", n) + a)
			}
			for range 20 {
				var b strings.Builder
				for range n {
					b.WriteString(alphabet[rng.IntN(len(alphabet))])
				}
				check(b.String())
			}
		}
	}
}

func FuzzPatterns(f *testing.F) {
	for _, s := range []string{"", "acme", "Acme", "a1", "openai", "my-token_1", "a/b", "agent.v2:x", "é"} {
		f.Add(s)
	}
	res := make([]*regexp.Regexp, len(patterns))
	for i, expr := range patterns {
		res[i] = regexp.MustCompile(expr)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, expr := range patterns {
			if got, want := mustPattern(expr).MatchString(s), res[i].MatchString(s); got != want {
				t.Fatalf("%s on %q: %v, regexp says %v", expr, s, got, want)
			}
		}
	})
}

// A shape the matcher does not know is refused, never matched approximately.
func TestPatternRefusesOtherShapes(t *testing.T) {
	for _, expr := range []string{"", "[a-z]{1,2}$", "^[a-z]{1,2}", "^[a-z]+$", "^[a-z]{2,1}$", "^[^a-z]{1,2}$", `^[\w]{1,2}$`,
		"^[a-z][a-z][a-z]{1,2}$", "^(a|b){1,2}$", "^[é]{1,2}$", "^[z-a]{1,2}$", "^{1,2}$"} {
		if _, err := parsePattern(expr); err == nil {
			t.Errorf("%q was accepted", expr)
		}
	}
}

func BenchmarkPatternVersusRegexp(b *testing.B) {
	re, p := regexp.MustCompile(IDPattern), mustPattern(IDPattern)
	b.Run("pattern", func(b *testing.B) {
		for b.Loop() {
			p.MatchString("my-token_1")
		}
	})
	b.Run("regexp", func(b *testing.B) {
		for b.Loop() {
			re.MatchString("my-token_1")
		}
	})
	b.Run("compile-all", func(b *testing.B) {
		for b.Loop() {
			for _, expr := range patterns {
				regexp.MustCompile(expr)
			}
		}
	})
	b.Run("parse-all", func(b *testing.B) {
		for b.Loop() {
			for _, expr := range patterns {
				mustPattern(expr)
			}
		}
	})
}
