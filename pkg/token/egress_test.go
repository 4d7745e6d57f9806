package token

import (
	"strings"
	"testing"
)

func validEgress() Egress {
	return Egress{
		AllowedHosts: []string{"api.openai.com", "example.org:8443"},
		Inject:       Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"},
	}
}

func TestEgressValidate(t *testing.T) {
	ok := []func(*Egress){
		func(e *Egress) {},
		func(e *Egress) { e.Inject = Inject{In: "query", Name: "api_key", Template: "{{value}}"} },
		func(e *Egress) { e.AllowedHosts = []string{"localhost"} },
		func(e *Egress) { e.AllowedHosts = []string{"a-b.c1.example", "x.io:1", "x.io:65535", "x.io"} },
		func(e *Egress) { e.Inject.Name = "X-Api-Key" },
		func(e *Egress) { e.Inject.Template = "{{value}}" },
	}
	for i, mut := range ok {
		e := validEgress()
		mut(&e)
		if err := e.Validate(); err != nil {
			t.Errorf("valid case %d: %v", i, err)
		}
	}
	many := make([]string, MaxAllowedHosts+1)
	for i := range many {
		many[i] = "h" + strings.Repeat("x", i) + ".example"
	}
	bad := []struct {
		field string
		mut   func(*Egress)
	}{
		{"egress.allowedHosts", func(e *Egress) { e.AllowedHosts = nil }},
		{"egress.allowedHosts", func(e *Egress) { e.AllowedHosts = many }},
		{"egress.allowedHosts[1]", func(e *Egress) { e.AllowedHosts = []string{"a.example", "a.example"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"*.example.com"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"https://api.example.com"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"api.example.com/v1"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"user@api.example.com"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"API.example.com"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"api.example.com."} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"10.0.0.1"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"169.254.169.254:80"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"[::1]:443"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"::1"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"127.1"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a.example:0"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a.example:65536"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a.example:08"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a.example:"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{""} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"-a.example"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a..example"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{strings.Repeat("a", 64) + ".example"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{strings.Repeat("abc.", 64) + "example"} }},
		{"egress.allowedHosts[0]", func(e *Egress) { e.AllowedHosts = []string{"a.example\r\nx"} }},
		{"egress.inject.in", func(e *Egress) { e.Inject.In = "body" }},
		{"egress.inject.in", func(e *Egress) { e.Inject.In = "" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "X-Key\r\nEvil: 1" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "{{value}}" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "X Key" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "host" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "Content-Length" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "Transfer-Encoding" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "Connection" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = "Proxy-Authorization" }},
		{"egress.inject.name", func(e *Egress) { e.Inject.Name = strings.Repeat("a", MaxInjectNameLength+1) }},
		{"egress.inject.name", func(e *Egress) { e.Inject = Inject{In: "query", Name: "a&b", Template: "{{value}}"} }},
		{"egress.inject.name", func(e *Egress) { e.Inject = Inject{In: "query", Name: "a=b", Template: "{{value}}"} }},
		{"egress.inject.name", func(e *Egress) { e.Inject = Inject{In: "query", Name: "", Template: "{{value}}"} }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "Bearer" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "{{value}}{{value}}" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "{{ value }}" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "{{value}} {{x}}" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "Bearer {{value}}\r\nX-Evil: 1" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "Bearer {{value}}\n" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = "Bé {{value}}" }},
		{"egress.inject.template", func(e *Egress) { e.Inject.Template = strings.Repeat("a", MaxTemplateLength) + "{{value}}" }},
	}
	for _, c := range bad {
		e := validEgress()
		c.mut(&e)
		err := e.Validate()
		if err == nil {
			t.Errorf("%+v: accepted, want an error on %s", e, c.field)
			continue
		}
		te := As(err)
		if te.Kind != Invalid || len(te.Details) != 1 || te.Details[0].Field != c.field {
			t.Errorf("%+v: %v (details %+v), want invalid on %s", e, err, te.Details, c.field)
		}
	}
}

func TestEgressAllowsHost(t *testing.T) {
	e := validEgress() // api.openai.com (443 only), example.org:8443
	cases := map[string]bool{
		"api.openai.com":         true,
		"api.openai.com:443":     true,
		"API.OpenAI.com":         true,
		"api.openai.com:80":      false,
		"api.openai.com:0443":    false,
		"api.openai.com:":        false,
		"evil.api.openai.com":    false,
		"api.openai.com.evil.io": false,
		"example.org:8443":       true,
		"example.org":            false,
		"example.org:443":        false,
		":443":                   false,
		"":                       false,
		"api.openai.com:443:443": false,
	}
	for hp, want := range cases {
		if got := e.AllowsHost(hp); got != want {
			t.Errorf("AllowsHost(%q) = %v, want %v", hp, got, want)
		}
	}
}

func TestEgressCanonicalDigest(t *testing.T) {
	e := validEgress()
	want := `{"allowedHosts":["api.openai.com","example.org:8443"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`
	if got := string(e.Canonical()); got != want {
		t.Fatalf("Canonical = %s, want %s", got, want)
	}
	swapped := e
	swapped.AllowedHosts = []string{"example.org:8443", "api.openai.com"}
	if swapped.Digest() != e.Digest() {
		t.Error("host order changed the digest")
	}
	if e.AllowedHosts[0] != "api.openai.com" || swapped.AllowedHosts[0] != "example.org:8443" {
		t.Error("Canonical reordered the caller's slice")
	}
	if len(e.Digest()) != 64 {
		t.Errorf("digest %q is not hex SHA-256", e.Digest())
	}
	for i, mut := range []func(*Egress){
		func(e *Egress) { e.AllowedHosts = []string{"api.openai.com"} },
		func(e *Egress) { e.Inject.In = "query" },
		func(e *Egress) { e.Inject.Name = "authorization" },
		func(e *Egress) { e.Inject.Template = "{{value}}" },
	} {
		o := validEgress()
		mut(&o)
		if o.Digest() == e.Digest() {
			t.Errorf("change %d kept the digest", i)
		}
		if o.Equal(&e) || !o.Equal(&o) {
			t.Errorf("change %d: Equal is wrong", i)
		}
	}
	var none *Egress
	if !none.Equal(nil) || none.Equal(&e) || e.Equal(nil) {
		t.Error("Equal with nil is wrong")
	}
}

func TestEgressCheckNarrows(t *testing.T) {
	old := validEgress() // api.openai.com, example.org:8443
	for _, c := range []struct {
		hosts []string
		field string // "" : narrows
	}{
		{[]string{"api.openai.com"}, ""},
		{[]string{"example.org:8443", "api.openai.com"}, ""},
		{[]string{"api.openai.com", "evil.example"}, "egress.allowedHosts[1]"},
		{[]string{"example.org"}, "egress.allowedHosts[0]"},         // another port is another host
		{[]string{"api.openai.com:8443"}, "egress.allowedHosts[0]"}, // and the other way round
	} {
		e := validEgress()
		e.AllowedHosts = c.hosts
		err := e.CheckNarrows(old)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%v: %v, want it to narrow", c.hosts, err)
		case c.field != "" && (err == nil || As(err).Details[0].Field != c.field):
			t.Errorf("%v: %v, want invalid on %s", c.hosts, err, c.field)
		}
	}
}
