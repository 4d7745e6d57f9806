package config

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// originCases is every form of CORS_ALLOWED_ORIGINS the service must take or refuse. want is
// the parsed list; a refusal names the reason (fault) instead. cfnAccepts is what the template's
// AllowedPattern says of a single origin where it cannot be as strict (default port, port range).
var originCases = []struct {
	raw   string
	want  []string
	fault string
	// cfnAccepts marks the few malformed single origins CloudFormation's pattern lets through.
	cfnAccepts bool
}{
	{raw: "", want: nil},
	{raw: "  ", want: nil},
	{raw: "*", want: []string{"*"}},
	{raw: " * ", want: []string{"*"}},
	{raw: "https://admin.example.com", want: []string{"https://admin.example.com"}},
	{raw: "https://admin.example.com, http://localhost:3000", want: []string{"https://admin.example.com", "http://localhost:3000"}},
	{raw: "http://127.0.0.1:8081", want: []string{"http://127.0.0.1:8081"}},
	{raw: "http://[::1]:8081", want: []string{"http://[::1]:8081"}},
	{raw: "https://xn--bcher-kva.example", want: []string{"https://xn--bcher-kva.example"}},
	{raw: "https://a-b.example.com:8443", want: []string{"https://a-b.example.com:8443"}},

	{raw: "https://admin.example.com/", fault: "no trailing slash"},
	{raw: "https://admin.example.com/dashboard", fault: "no path"},
	{raw: "https://admin.example.com?x=1", fault: "no query"},
	{raw: "https://admin.example.com#top", fault: "no fragment"},
	{raw: "admin.example.com", fault: "scheme://host[:port]"},
	{raw: "//admin.example.com", fault: "scheme://host[:port]"},
	{raw: "ftp://admin.example.com", fault: "scheme must be http or https"},
	{raw: "https://*.example.com", fault: "wildcard inside a host"},
	{raw: "https://admin.*.com", fault: "wildcard inside a host"},
	{raw: "https://user@admin.example.com", fault: "no user info"},
	{raw: "https://", fault: "host is missing"},
	{raw: "https://Admin.Example.com", fault: "lower case"},
	{raw: "HTTPS://admin.example.com", fault: "lower case"},
	{raw: "https://bücher.example", fault: "xn-- form"},
	{raw: "https://admin_example.com", fault: "lower case"},
	{raw: "https://-admin.example.com", fault: "lower case"},
	{raw: "https://admin.example.com:443", fault: "without its default port: write https://admin.example.com", cfnAccepts: true},
	{raw: "http://localhost:80", fault: "without its default port", cfnAccepts: true},
	{raw: "http://localhost:99999", fault: "port must be a number from 1 to 65535", cfnAccepts: true},
	{raw: "http://localhost:0", fault: "port must be a number"},
	{raw: "http://localhost:x", fault: "not a URL"},
	{raw: "null", fault: `"null" origin`},
	{raw: "*, https://admin.example.com", fault: "cannot be listed with others"},
	{raw: "https://a.example.com,,https://b.example.com", fault: "entry 2 is empty"},
	{raw: "https://a.example.com,", fault: "entry 2 is empty"},
	{raw: "https://a.example.com, https://a.example.com", fault: "listed twice"},
}

func TestParseOrigins(t *testing.T) {
	for _, c := range originCases {
		got, err := ParseOrigins(c.raw)
		switch {
		case c.fault == "" && err != nil:
			t.Errorf("%q: %v", c.raw, err)
		case c.fault == "" && !slices.Equal(got, c.want):
			t.Errorf("%q: %q, want %q", c.raw, got, c.want)
		case c.fault != "" && (err == nil || !strings.Contains(err.Error(), c.fault)):
			t.Errorf("%q: %v, want an error saying %q", c.raw, err, c.fault)
		case c.fault != "" && !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS"):
			t.Errorf("%q: %v does not name CORS_ALLOWED_ORIGINS", c.raw, err)
		case c.fault != "" && got != nil:
			t.Errorf("%q: refused yet returned %q", c.raw, got)
		}
	}
}

// Load refuses a malformed value with the rest of the configuration, so the server and every
// function stop at start.
func TestLoadChecksCORSOrigins(t *testing.T) {
	c, err := Load(env(map[string]string{"CORS_ALLOWED_ORIGINS": "https://admin.example.com,http://localhost:3000"}))
	if err != nil || !slices.Equal(c.CORSAllowedOrigins, []string{"https://admin.example.com", "http://localhost:3000"}) {
		t.Fatalf("%q %v", c.CORSAllowedOrigins, err)
	}
	if c, _ := Load(env(nil)); c.CORSAllowedOrigins != nil {
		t.Fatalf("CORS is on by default: %q", c.CORSAllowedOrigins)
	}
	if _, err := Load(env(map[string]string{"CORS_ALLOWED_ORIGINS": "https://admin.example.com/"})); err == nil || !strings.Contains(err.Error(), "trailing slash") {
		t.Fatalf("a trailing slash passed: %v", err)
	}
}

// The template's AllowedPattern (applied by CloudFormation to each value of the list) agrees
// with ParseOrigins on every single value, except where the table says it cannot be as strict.
func TestCloudFormationPatternAgrees(t *testing.T) {
	re := regexp.MustCompile(CloudFormationOriginPattern)
	for _, c := range originCases {
		if strings.Contains(c.raw, ",") {
			continue // CloudFormation splits the list before matching
		}
		value := c.raw
		if strings.TrimSpace(value) == "" {
			value = "" // an empty parameter is one empty value
		} else if value != strings.TrimSpace(value) {
			continue // CloudFormation does not trim; the server does
		}
		want := c.fault == "" || c.cfnAccepts
		if got := re.MatchString(value); got != want {
			t.Errorf("AllowedPattern on %q: %v, ParseOrigins %v (fault %q)", value, got, want, c.fault)
		}
	}
}
