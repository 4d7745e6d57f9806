package query

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"aitokens/pkg/token"
)

// Limits that keep a query's cost bounded. Matching is RE2 (linear time in the input).
const (
	MaxQueryLength = 2048
	MaxRegexLength = 256
	MaxConditions  = 64
	MaxDepth       = 8
	MaxListValues  = 100
)

// Query is a parsed q parameter. The nil *Query matches everything.
type Query struct {
	root node
}

// Parse reads q as infra/spec/q-param.md describes; "" (or only spaces) is the nil query.
func Parse(q string) (*Query, error) {
	if strings.TrimSpace(q) == "" {
		return nil, nil
	}
	if len(q) > MaxQueryLength {
		return nil, qError(q, MaxQueryLength, "query is longer than %d bytes", MaxQueryLength)
	}
	if !utf8.ValidString(q) {
		return nil, qError(q, 0, "query is not valid UTF-8")
	}
	p := &parser{src: q}
	root, err := p.conjunction(false)
	if err != nil {
		return nil, err
	}
	return &Query{root: root}, nil
}

// Match reports whether doc satisfies the query.
func (q *Query) Match(doc map[string]any) bool {
	return q == nil || q.root.match(doc)
}

// String prints the query in a form that Parse reads back to the same meaning.
func (q *Query) String() string {
	if q == nil {
		return ""
	}
	return q.root.String()
}

// IDs returns the ids the query is limited to, when one of its top-level conditions is an id
// equality or an IN list of ids, so that those keys can be read directly instead of the
// tenant's whole partition. The query must still be matched against what is read.
func (q *Query) IDs() ([]string, bool) {
	if q == nil {
		return nil, false
	}
	for _, n := range q.root.(andNode) {
		switch c := n.(type) {
		case eqNode:
			if c.field.name == "id" {
				return []string{c.val.str}, true
			}
		case inNode:
			if c.field.name == "id" {
				ids := make([]string, len(c.vals))
				for i, v := range c.vals {
					ids[i] = v.str
				}
				return ids, true
			}
		}
	}
	return nil, false
}

// qError is the 400 for a bad query; pos is a byte offset, shown as a 1-based character position.
func qError(src string, pos int, format string, args ...any) error {
	pos = min(max(pos, 0), len(src))
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(" at position %d", utf8.RuneCountInString(src[:pos])+1)
	return &token.Error{Kind: token.Invalid, Message: "Invalid q: " + msg,
		Details: []token.Detail{{Field: "q", Type: "query", Message: msg}}}
}

type parser struct {
	src        string
	pos        int
	conditions int
	depth      int
	steps      int // loop iterations, so a test can check that parsing is linear in the input
}

func (p *parser) errorf(pos int, format string, args ...any) error {
	return qError(p.src, pos, format, args...)
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *parser) skipSpaces() bool {
	start := p.pos
	for !p.eof() && isSpace(p.peek()) {
		p.steps++
		p.pos++
	}
	return p.pos > start
}

// keyword reports whether the source at pos holds word followed by a space or paren.
func (p *parser) keyword(word string) bool {
	end := p.pos + len(word)
	if end > len(p.src) || !strings.EqualFold(p.src[p.pos:end], word) {
		return false
	}
	return end == len(p.src) || isSpace(p.src[end]) || p.src[end] == '('
}

// conjunction reads conditions separated by white space or AND, up to the end of the input
// (top level) or to the closing parenthesis of a group (inGroup), where OR may also appear.
func (p *parser) conjunction(inGroup bool) (node, error) {
	var or orNode
	and := andNode{}
	for {
		p.steps++
		p.skipSpaces()
		if p.eof() {
			if inGroup {
				return nil, p.errorf(p.pos, "unbalanced parenthesis: missing )")
			}
			break
		}
		if inGroup && p.peek() == ')' {
			break
		}
		if len(and) > 0 && p.keyword("AND") {
			p.pos += 3
			continue
		}
		if inGroup && len(and) > 0 && p.keyword("OR") {
			p.pos += 2
			or = append(or, and)
			and = andNode{}
			continue
		}
		if p.peek() == ')' {
			return nil, p.errorf(p.pos, "unbalanced parenthesis: unexpected )")
		}
		var n node
		var err error
		if inGroup && p.peek() == '(' {
			n, err = p.group()
		} else {
			n, err = p.condition(inGroup)
		}
		if err != nil {
			return nil, err
		}
		and = append(and, n)
		if !inGroup && p.peek() == ')' {
			return nil, p.errorf(p.pos, "unbalanced parenthesis: unexpected )")
		}
		if !p.eof() && !isSpace(p.peek()) && !(inGroup && p.peek() == ')') {
			return nil, p.errorf(p.pos, "expected a space between conditions")
		}
	}
	if len(and) == 0 {
		return nil, p.errorf(p.pos, "empty condition")
	}
	if or != nil {
		return append(or, and), nil
	}
	return and, nil
}

// group reads "( ... )" of a compound query.
func (p *parser) group() (node, error) {
	open := p.pos
	p.depth++
	if p.depth > MaxDepth {
		return nil, p.errorf(open, "groups are nested deeper than %d", MaxDepth)
	}
	p.pos++ // (
	n, err := p.conjunction(true)
	if err != nil {
		return nil, err
	}
	p.pos++ // )
	p.depth--
	return n, nil
}

// condition reads FIELD:EXPR.
func (p *parser) condition(inGroup bool) (node, error) {
	start := p.pos
	p.conditions++
	if p.conditions > MaxConditions {
		return nil, p.errorf(start, "more than %d conditions", MaxConditions)
	}
	for !p.eof() && isFieldChar(p.peek()) {
		p.steps++
		p.pos++
	}
	field := p.src[start:p.pos]
	if field == "" {
		return nil, p.errorf(start, "expected a field name")
	}
	if p.peek() != ':' {
		return nil, p.errorf(p.pos, "expected : after field %q", field)
	}
	p.pos++
	if field == "compoundLogicalQuery" {
		if p.peek() != '(' {
			return nil, p.errorf(p.pos, "compoundLogicalQuery needs a parenthesised expression")
		}
		return p.group()
	}
	typ, ok := token.Fields[field]
	if !ok {
		return nil, p.errorf(start, "unknown field %q", field)
	}
	f := fieldRef{name: field, typ: typ}
	switch p.peek() {
	case '(':
		return p.parenExpr(f)
	case '~':
		p.pos++
		start := p.pos
		return p.regex(f, start, p.scanRegex(false))
	}
	return p.simpleExpr(f, inGroup)
}

func isFieldChar(c byte) bool {
	return c == '.' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// simpleExpr reads a comparison or a value after "field:".
func (p *parser) simpleExpr(f fieldRef, inGroup bool) (node, error) {
	opStart := p.pos
	op := p.comparison()
	valStart := p.pos
	raw, quoted, err := p.value(inGroup)
	if err != nil {
		return nil, err
	}
	if op != "" {
		v, err := p.typed(f, raw, quoted, valStart)
		if err != nil {
			return nil, err
		}
		if f.typ != token.Number && f.typ != token.Date {
			return nil, p.errorf(opStart, "%s compares numbers or dates, and %s is a %s", op, f.name, typeName(f.typ))
		}
		return cmpNode{f, op, v}, nil
	}
	if !quoted {
		switch strings.ToLower(raw) {
		case "null", "exists", "missing":
			return presenceNode{f, strings.ToLower(raw)}, nil
		}
	}
	v, err := p.typed(f, raw, quoted, valStart)
	if err != nil {
		return nil, err
	}
	return eqNode{f, v}, nil
}

func (p *parser) comparison() string {
	for _, op := range []string{">=", "<=", ">", "<"} {
		if strings.HasPrefix(p.src[p.pos:], op) {
			p.pos += len(op)
			return op
		}
	}
	return ""
}

// value reads a quoted or bare value. A bare one ends at white space or a parenthesis, and
// inside parentheses also at ','. Quote a value that holds any of them.
func (p *parser) value(inParens bool) (string, bool, error) {
	start := p.pos
	if p.peek() == '"' {
		p.pos++
		var b strings.Builder
		for !p.eof() {
			p.steps++
			c := p.peek()
			switch c {
			case '\\':
				if p.pos+1 >= len(p.src) {
					return "", false, p.errorf(p.pos, "unfinished escape")
				}
				b.WriteByte(p.src[p.pos+1])
				p.pos += 2
				continue
			case '"':
				p.pos++
				return b.String(), true, nil
			}
			b.WriteByte(c)
			p.pos++
		}
		return "", false, p.errorf(start, "unterminated quoted value")
	}
	for !p.eof() {
		p.steps++
		c := p.peek()
		if isSpace(c) || c == '"' || c == '(' || c == ')' || (inParens && c == ',') {
			break
		}
		p.pos++
	}
	if p.pos == start {
		return "", false, p.errorf(start, "empty value")
	}
	return p.src[start:p.pos], false, nil
}

// typed converts a raw value to the field's type.
func (p *parser) typed(f fieldRef, raw string, quoted bool, pos int) (value, error) {
	v := value{str: raw, quoted: quoted}
	switch f.typ {
	case token.String:
		// An id reaches DynamoDB as a key: it passes the same check as an id in a path.
		if f.name == "id" && token.ValidateID(raw) != nil {
			return v, p.errorf(pos, "id is a token id (%s), and this value is not", token.IDPattern)
		}
	case token.Number:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return v, p.errorf(pos, "%s is a number, and %q is not", f.name, raw)
		}
		v.num = n
	case token.Date:
		t, ok := parseDate(raw)
		if !ok {
			return v, p.errorf(pos, "%s is a date (RFC 3339 with at most %d fractional digits, or YYYY-MM-DD), and %q is not", f.name, token.MaxFractionDigits, raw)
		}
		v.time = t
	case token.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil || quoted {
			return v, p.errorf(pos, "%s is true or false, and %q is not", f.name, raw)
		}
		v.bool = b
	}
	return v, nil
}

// parseDate reads a date in q (or a stored one) as token.ParseInstant does, cut to the
// millisecond as a stored date is: q on the string a client sent with more digits finds what
// was stored from it, in = and in every range form alike.
func parseDate(s string) (time.Time, bool) {
	if t, err := token.ParseInstant(s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// parenExpr reads "(~regex with spaces)", "(>=A AND <=B)" or "(v1,v2,...)".
func (p *parser) parenExpr(f fieldRef) (node, error) {
	open := p.pos
	p.pos++
	p.skipSpaces()
	if p.peek() == '~' {
		p.pos++
		start := p.pos
		pattern := p.scanRegex(true)
		if p.peek() != ')' {
			return nil, p.errorf(open, "unbalanced parenthesis: missing )")
		}
		n, err := p.regex(f, start, trimUnescapedSpace(pattern))
		p.pos++
		return n, err
	}
	if strings.ContainsAny(string(p.peek()), "<>") {
		var bounds andNode
		for {
			p.steps++
			p.skipSpaces()
			n, err := p.simpleExpr(f, true)
			if err != nil {
				return nil, err
			}
			if _, ok := n.(cmpNode); !ok {
				return nil, p.errorf(p.pos, "a range holds comparisons (>, <, >=, <=) joined by AND")
			}
			bounds = append(bounds, n)
			p.skipSpaces()
			if p.peek() == ')' {
				p.pos++
				return rangeNode(bounds), nil
			}
			if !p.keyword("AND") {
				if p.eof() {
					return nil, p.errorf(open, "unbalanced parenthesis: missing )")
				}
				return nil, p.errorf(p.pos, "expected AND or ) in a range")
			}
			p.pos += 3
		}
	}
	var vals []value
	for {
		p.steps++
		p.skipSpaces()
		start := p.pos
		if p.eof() {
			return nil, p.errorf(open, "unbalanced parenthesis: missing )")
		}
		raw, quoted, err := p.value(true)
		if err != nil {
			return nil, err
		}
		v, err := p.typed(f, raw, quoted, start)
		if err != nil {
			return nil, err
		}
		if vals = append(vals, v); len(vals) > MaxListValues {
			return nil, p.errorf(start, "a list holds at most %d values", MaxListValues)
		}
		p.skipSpaces()
		switch p.peek() {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return inNode{f, vals}, nil
		case 0:
			return nil, p.errorf(open, "unbalanced parenthesis: missing )")
		default:
			return nil, p.errorf(p.pos, "expected , or ) in a list")
		}
	}
}

// scanRegex reads a pattern up to white space (unless spaces are allowed inside parentheses)
// or an unbalanced ')', skipping escapes and character classes so that "[)]", "[[:alpha:])]" or
// "\)" stay in the pattern, as RE2 reads them.
func (p *parser) scanRegex(inParens bool) string {
	start := p.pos
	depth := 0
	classBody := -1 // inside a class: where its body starts (a ']' there is a literal)
	quoted := false // after a \Q without \E: RE2 reads the rest literally, so parens do not nest
	for !p.eof() {
		p.steps++
		c := p.peek()
		switch {
		case c == '\\' && strings.HasPrefix(p.src[p.pos:], `\Q`):
			if end := strings.Index(p.src[p.pos+2:], `\E`); end >= 0 {
				p.pos += 2 + end + 2
			} else {
				quoted = true
				p.pos += 2
			}
			continue
		case c == '\\':
			p.pos += 2
			continue
		case quoted:
			if c == ')' || isSpace(c) && !inParens {
				return p.src[start:p.pos]
			}
		case classBody >= 0:
			switch {
			case c == '[' && strings.HasPrefix(p.src[p.pos:], "[:"):
				if end := strings.Index(p.src[p.pos+2:], ":]"); end >= 0 {
					p.pos += 2 + end + 2
					continue
				}
			case c == ']' && p.pos != classBody:
				classBody = -1
			}
		case c == '[':
			classBody = p.pos + 1
			if strings.HasPrefix(p.src[p.pos+1:], "^") {
				classBody++
			}
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return p.src[start:p.pos]
			}
			depth--
		case isSpace(c) && !inParens:
			return p.src[start:p.pos]
		}
		p.pos++
	}
	p.pos = min(p.pos, len(p.src))
	return p.src[start:p.pos]
}

// terminateQuote closes a \Q that runs to the end of a pattern, so that the pattern can be
// printed inside parentheses; "\Q(" and "\Q(\E" mean the same to RE2.
func terminateQuote(pattern string) string {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '\\' {
			continue
		}
		if strings.HasPrefix(pattern[i:], `\Q`) {
			end := strings.Index(pattern[i+2:], `\E`)
			if end < 0 {
				return pattern + `\E`
			}
			i += 2 + end + 1
			continue
		}
		i++
	}
	return pattern
}

// trimUnescapedSpace drops white space before the closing parenthesis of "(~pattern )", but
// not an escaped one ("\\ " is a literal space of the pattern).
func trimUnescapedSpace(pattern string) string {
	for len(pattern) > 0 && isSpace(pattern[len(pattern)-1]) {
		slashes := 0
		for i := len(pattern) - 2; i >= 0 && pattern[i] == '\\'; i-- {
			slashes++
		}
		if slashes%2 == 1 {
			break
		}
		pattern = pattern[:len(pattern)-1]
	}
	return pattern
}

func (p *parser) regex(f fieldRef, pos int, pattern string) (node, error) {
	switch {
	case pattern == "":
		return nil, p.errorf(pos, "empty regular expression")
	case len(pattern) > MaxRegexLength:
		return nil, p.errorf(pos, "regular expression is longer than %d bytes", MaxRegexLength)
	case f.typ != token.String:
		return nil, p.errorf(pos, "~ matches text, and %s is a %s", f.name, typeName(f.typ))
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, p.errorf(pos, "bad regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return regexNode{f, re}, nil
}

func typeName(t token.FieldType) string {
	switch t {
	case token.Number:
		return "number"
	case token.Date:
		return "date"
	case token.Bool:
		return "boolean"
	}
	return "string"
}

// Fields returns the fields the query reads, so that a list can read them from the narrowest
// index that holds them.
func (q *Query) Fields() map[string]bool {
	out := map[string]bool{}
	if q != nil {
		fieldsOf(q.root, out)
	}
	return out
}

func fieldsOf(n node, out map[string]bool) {
	switch c := n.(type) {
	case andNode:
		for _, m := range c {
			fieldsOf(m, out)
		}
	case orNode:
		for _, m := range c {
			fieldsOf(m, out)
		}
	case rangeNode:
		for _, m := range c {
			fieldsOf(m, out)
		}
	case eqNode:
		out[c.field.name] = true
	case inNode:
		out[c.field.name] = true
	case cmpNode:
		out[c.field.name] = true
	case regexNode:
		out[c.field.name] = true
	case presenceNode:
		out[c.field.name] = true
	}
}

// NamePrefix returns what every match's name starts with, when a top-level condition says so:
// an exact name (exact: the whole name) or a regex anchored at the start of the text with a
// literal, case-sensitive prefix (name:~^Open). A list then reads only the names in that range
// of the name index. The query must still be matched against what is read.
func (q *Query) NamePrefix() (prefix string, exact, ok bool) {
	if q == nil {
		return "", false, false
	}
	for _, n := range q.root.(andNode) {
		switch c := n.(type) {
		case eqNode:
			if c.field.name == "name" {
				return c.val.str, true, true
			}
		case regexNode:
			if c.field.name != "name" {
				continue
			}
			if p := anchoredPrefix(c.re.String()); p != "" {
				prefix, ok = p, true // an exact name, if there is one, narrows more: go on
			}
		}
	}
	return prefix, false, ok
}

// anchoredPrefix is the literal text every match of pattern starts with at the start of the
// input, "" if none: ^ (not in multi-line mode) followed by literal characters, case-sensitive.
func anchoredPrefix(pattern string) string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	lit := re.Sub[1]
	if lit.Op != syntax.OpLiteral || lit.Flags&syntax.FoldCase != 0 {
		return ""
	}
	return string(lit.Rune)
}
