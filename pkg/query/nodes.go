package query

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"aitokens/pkg/token"
)

type node interface {
	match(doc map[string]any) bool
	String() string
}

type fieldRef struct {
	name string
	typ  token.FieldType
}

// value is a query value, already converted to its field's type.
type value struct {
	str    string
	quoted bool
	num    float64
	time   time.Time
	bool   bool
}

// docValue is what a document holds at a field, in the field's type.
func docValue(doc map[string]any, f fieldRef) (value, bool) {
	raw, ok := Lookup(doc, f.name)
	if !ok || raw == nil {
		// A boolean is shown only when true (e.g. restricted): absent reads as false.
		return value{}, f.typ == token.Bool
	}
	switch f.typ {
	case token.Number:
		switch n := raw.(type) {
		case int:
			return value{num: float64(n)}, true
		case float64:
			return value{num: n}, true
		}
	case token.Date:
		if s, ok := raw.(string); ok {
			if t, ok := parseDate(s); ok {
				return value{time: t}, true
			}
		}
	case token.Bool:
		if b, ok := raw.(bool); ok {
			return value{bool: b}, true
		}
	default:
		if s, ok := raw.(string); ok {
			return value{str: s}, true
		}
	}
	return value{}, false
}

// compare orders two values of one field type: a document's against a query's in q, two
// documents' in sort. It is the one comparison of both.
func compare(typ token.FieldType, a, b value) int {
	switch typ {
	case token.Number:
		switch {
		case a.num < b.num:
			return -1
		case a.num > b.num:
			return 1
		}
		return 0
	case token.Date:
		return a.time.Compare(b.time)
	case token.Bool:
		return cmp.Compare(boolInt(a.bool), boolInt(b.bool)) // false before true
	}
	return strings.Compare(a.str, b.str)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (v value) print(typ token.FieldType) string {
	switch typ {
	case token.Number:
		return strconv.FormatFloat(v.num, 'g', -1, 64)
	case token.Bool:
		return strconv.FormatBool(v.bool)
	}
	return quote(v.str)
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

type andNode []node

func (n andNode) match(doc map[string]any) bool {
	for _, c := range n {
		if !c.match(doc) {
			return false
		}
	}
	return true
}

func (n andNode) String() string {
	parts := make([]string, len(n))
	for i, c := range n {
		parts[i] = c.String()
	}
	return strings.Join(parts, " ")
}

type orNode []node

func (n orNode) match(doc map[string]any) bool {
	for _, c := range n {
		if c.match(doc) {
			return true
		}
	}
	return false
}

func (n orNode) String() string {
	parts := make([]string, len(n))
	for i, c := range n {
		parts[i] = "(" + c.String() + ")"
	}
	return "compoundLogicalQuery:(" + strings.Join(parts, " OR ") + ")"
}

type eqNode struct {
	field fieldRef
	val   value
}

func (n eqNode) match(doc map[string]any) bool {
	v, ok := docValue(doc, n.field)
	return ok && compare(n.field.typ, v, n.val) == 0
}

func (n eqNode) String() string { return n.field.name + ":" + n.val.print(n.field.typ) }

type inNode struct {
	field fieldRef
	vals  []value
}

func (n inNode) match(doc map[string]any) bool {
	v, ok := docValue(doc, n.field)
	if !ok {
		return false
	}
	for _, want := range n.vals {
		if compare(n.field.typ, v, want) == 0 {
			return true
		}
	}
	return false
}

func (n inNode) String() string {
	parts := make([]string, len(n.vals))
	for i, v := range n.vals {
		parts[i] = v.print(n.field.typ)
	}
	return n.field.name + ":(" + strings.Join(parts, ",") + ")"
}

type cmpNode struct {
	field fieldRef
	op    string
	val   value
}

func (n cmpNode) match(doc map[string]any) bool {
	v, ok := docValue(doc, n.field)
	if !ok {
		return false
	}
	c := compare(n.field.typ, v, n.val)
	switch n.op {
	case ">":
		return c > 0
	case "<":
		return c < 0
	case ">=":
		return c >= 0
	default:
		return c <= 0
	}
}

func (n cmpNode) String() string { return n.field.name + ":" + n.op + n.val.print(n.field.typ) }

// rangeNode is "field:(>=A AND <B)": every bound must hold.
type rangeNode andNode

func (n rangeNode) match(doc map[string]any) bool { return andNode(n).match(doc) }

func (n rangeNode) String() string {
	parts := make([]string, len(n))
	for i, c := range n {
		b := c.(cmpNode)
		parts[i] = b.op + b.val.print(b.field.typ)
	}
	return n[0].(cmpNode).field.name + ":(" + strings.Join(parts, " AND ") + ")"
}

type regexNode struct {
	field fieldRef
	re    interface {
		MatchString(string) bool
		String() string
	}
}

func (n regexNode) match(doc map[string]any) bool {
	v, ok := docValue(doc, n.field)
	return ok && n.re.MatchString(v.str)
}

func (n regexNode) String() string { return n.field.name + ":(~" + terminateQuote(n.re.String()) + ")" }

// presenceNode is "field:null", "field:exists" or "field:missing".
type presenceNode struct {
	field fieldRef
	kind  string
}

func (n presenceNode) match(doc map[string]any) bool {
	v, ok := Lookup(doc, n.field.name)
	switch n.kind {
	case "exists":
		return ok
	case "missing":
		return !ok
	}
	return !ok || v == nil
}

func (n presenceNode) String() string { return n.field.name + ":" + n.kind }
