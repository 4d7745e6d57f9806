package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// AnyOrigin, alone in CORS_ALLOWED_ORIGINS, lets a page on any origin call the API. Bearer
// tokens only (no cookies, no credentials mode), so a foreign page still needs a JWT to do
// anything.
const AnyOrigin = "*"

// OriginPattern is the form of one allowed origin as a browser sends it in its Origin header:
// a lower-case http or https scheme, a lower-case host (DNS labels, IPv4 or a bracketed IPv6
// literal; an internationalized name in its xn-- form) and an optional port. Go's RE2 and the
// Java regular expressions of CloudFormation read it alike, so the template's check of the
// CorsAllowedOrigins parameter is this very string (a test compares them).
const OriginPattern = `^https?://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:[1-9][0-9]{0,4})?$`

// CloudFormationOriginPattern is the AllowedPattern of the template's CorsAllowedOrigins
// parameter: CloudFormation applies it to each value of the list, and the list is empty (one
// empty value, CORS off) or "*" or origins. It catches the common mistakes at deploy time; the
// few it lets through (a default port such as :443, a port over 65535) are only ever caught
// here, by ParseOrigins, which the local server and every function run at start.
const CloudFormationOriginPattern = `^$|^\*$|` + OriginPattern

var originRE = regexp.MustCompile(OriginPattern)

// ParseOrigins reads CORS_ALLOWED_ORIGINS: empty means CORS off (nil), "*" any origin, else a
// comma-separated list of exact origins. A malformed entry is an error that names it and says
// how to write it, so a typo stops the server at start instead of silently allowing nothing.
func ParseOrigins(raw string) ([]string, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var (
		origins []string
		errs    []error
		seen    = map[string]bool{}
	)
	entries := strings.Split(raw, ",")
	for i, e := range entries {
		o := strings.TrimSpace(e)
		switch {
		case o == AnyOrigin && len(entries) == 1:
			return []string{AnyOrigin}, nil
		case o == AnyOrigin:
			errs = append(errs, errors.New(`"*" allows every origin and cannot be listed with others`))
		case o == "":
			errs = append(errs, fmt.Errorf("entry %d is empty (a doubled or trailing comma?)", i+1))
		case seen[o]:
			errs = append(errs, fmt.Errorf("%q is listed twice", o))
		default:
			if err := checkOrigin(o); err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", o, err))
			}
		}
		seen[o] = true
		origins = append(origins, o)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("CORS_ALLOWED_ORIGINS must be * or comma-separated origins such as https://admin.example.com: %w", errors.Join(errs...))
	}
	return origins, nil
}

// checkOrigin says what is wrong with one origin, most specific reason first.
func checkOrigin(o string) error {
	if o == "null" {
		return errors.New(`the "null" origin (sandboxed frames, file: pages) is shared by unrelated pages and cannot be allowed`)
	}
	if !strings.Contains(o, "://") {
		return errors.New("an origin is scheme://host[:port]")
	}
	u, err := url.Parse(o)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the scheme must be http or https")
	case u.User != nil:
		return errors.New("an origin has no user info")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("an origin has no query")
	case u.Fragment != "" || strings.Contains(o, "#"):
		return errors.New("an origin has no fragment")
	case u.Path == "/":
		return errors.New("an origin has no trailing slash")
	case u.Path != "" || u.Opaque != "":
		return errors.New("an origin has no path")
	case u.Host == "":
		return errors.New("the host is missing")
	case strings.Contains(u.Host, "*"):
		return errors.New("a wildcard inside a host is not supported: list each origin, or use * alone")
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		switch {
		case err != nil || n < 1 || n > 65535 || port[0] == '0':
			return errors.New("the port must be a number from 1 to 65535")
		case (u.Scheme == "https" && n == 443) || (u.Scheme == "http" && n == 80):
			return fmt.Errorf("browsers send this origin without its default port: write %s://%s", u.Scheme, u.Hostname())
		}
	}
	if !originRE.MatchString(o) {
		// What is left: upper case, characters a host cannot hold, or a non-ASCII name.
		return errors.New("write it as a browser sends it: scheme and host in lower case, an internationalized host in its xn-- form")
	}
	return nil
}
