package token

import (
	"fmt"
	"strconv"
	"strings"
)

// pattern matches the one shape of regular expression the service's ids follow,
// ^[first][rest]{min,max}$ or ^[rest]{min,max}$ with ASCII character classes, byte by byte.
// The regexp package would compile {1,128} into 128 copies of its class at every process
// start: a measurable share of a Lambda cold start (GODEBUG=inittrace=1). TestPatternsMatchRegexp
// checks every pattern against the regexp package.
type pattern struct {
	first, rest *[256]bool // first is nil when the first character is one of rest
	min, max    int        // of the whole string, in bytes (every allowed byte is ASCII)
}

// mustPattern reads such an expression; any other shape is a programming error.
func mustPattern(expr string) pattern {
	p, err := parsePattern(expr)
	if err != nil {
		panic(err)
	}
	return p
}

func parsePattern(expr string) (pattern, error) {
	bad := fmt.Errorf("token: %q is not of the form ^[class]{min,max}$ or ^[class][class]{min,max}$", expr)
	s, ok := strings.CutPrefix(expr, "^")
	if !ok || !strings.HasSuffix(s, "}$") {
		return pattern{}, bad
	}
	var classes []*[256]bool
	for strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return pattern{}, bad
		}
		class, err := parseClass(s[1:end])
		if err != nil {
			return pattern{}, fmt.Errorf("%w: %v", bad, err)
		}
		classes, s = append(classes, class), s[end+1:]
	}
	lo, hi, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}$"), ",")
	minN, err1 := strconv.Atoi(lo)
	maxN, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || minN < 0 || maxN < minN || len(classes) < 1 || len(classes) > 2 {
		return pattern{}, bad
	}
	if len(classes) == 1 {
		return pattern{rest: classes[0], min: minN, max: maxN}, nil
	}
	return pattern{first: classes[0], rest: classes[1], min: minN + 1, max: maxN + 1}, nil
}

// parseClass reads a class of ASCII characters and ranges; "-" first or last is itself.
func parseClass(spec string) (*[256]bool, error) {
	var set [256]bool
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c >= 0x80 || c == '\\' || c == '[' || c == '^' && i == 0 {
			return nil, fmt.Errorf("unsupported class %q", spec)
		}
		if i+2 < len(spec) && spec[i+1] == '-' {
			if spec[i+2] < c || spec[i+2] >= 0x80 {
				return nil, fmt.Errorf("bad range in %q", spec)
			}
			for x := int(c); x <= int(spec[i+2]); x++ {
				set[x] = true
			}
			i += 2
			continue
		}
		set[c] = true
	}
	return &set, nil
}

// MatchString reports whether s matches the pattern as a whole.
func (p pattern) MatchString(s string) bool {
	if len(s) < p.min || len(s) > p.max {
		return false
	}
	for i := 0; i < len(s); i++ {
		class := p.rest
		if i == 0 && p.first != nil {
			class = p.first
		}
		if !class[s[i]] {
			return false
		}
	}
	return true
}
