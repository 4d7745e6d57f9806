package api

import (
	"bytes"
	"encoding/json"
	"testing"

	"aitokens/pkg/token"
)

func TestCheckStrictJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		field      string // "" when accepted
	}{
		{"plain object", `{"name":"a","value":"b"}`, ""},
		{"same key in two objects", `{"a":{"k":1},"b":{"k":2}}`, ""},
		{"same key in array elements", `[{"op":"ADD"},{"op":"REMOVE"}]`, ""},
		{"a surrogate pair", `{"value":"\ud83d\ude00"}`, ""},
		{"an escaped backslash before u", `{"value":"\\ud800"}`, ""},
		{"U+FFFD itself", `{"value":"\ufffd"}`, ""},
		{"duplicate at the top", `{"name":"a","name":"b"}`, "name"},
		{"duplicate differing in case", `{"value":"a","VALUE":"b"}`, "VALUE"},
		{"duplicate nested", `{"metadata":{"version":1,"version":2}}`, "metadata.version"},
		{"duplicate after a nested value", `{"a":{"x":[1,{"y":2}]},"a":3}`, "a"},
		{"duplicate in an array element", `[{"op":"ADD","op":"REMOVE"}]`, "op"},
		{"lone high surrogate", `{"value":"\ud800"}`, "body"},
		{"lone high surrogate at the end", `{"value":"\udbff`, "body"},
		{"high before a non-surrogate escape", `{"value":"\ud800\u0041"}`, "body"},
		{"lone low surrogate", `{"value":"x\udc00"}`, "body"},
		{"lone surrogate in a key", `{"\ud800":1}`, "body"},
	}
	for _, c := range cases {
		err := checkStrictJSON([]byte(c.body))
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.field != "" && (token.KindOf(err) != token.Invalid || token.As(err).Details[0].Field != c.field):
			t.Errorf("%s: %v, want a 400 naming %q", c.name, err, c.field)
		}
	}
}

// mapKeys counts the keys of every object in a decoded value.
func mapKeys(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := len(x)
		for _, e := range x {
			n += mapKeys(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += mapKeys(e)
		}
		return n
	}
	return 0
}

// FuzzStrictJSON: the check never panics, and a body it accepts decodes without losing a key
// (a duplicate would collapse two keys into one entry of the decoded map).
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{`{"name":"a","value":"b"}`, `{"a":1,"a":2}`, `{"v":"\ud800"}`, `[{"op":"x"},{"op":"y"}]`,
		`{"m":{"v":1},"n":[{"k":1,"k":2}]}`, `{"v":"\ud83d\ude00"}`, `"\\ud800"`, `{`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		raw := []byte(body)
		if checkStrictJSON(raw) != nil {
			return
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		if got, want := mapKeys(v), countKeys(raw); got != want {
			t.Fatalf("%q accepted, but decoding kept %d of its %d keys", body, got, want)
		}
	})
}

// countKeys counts the keys of raw's objects with the same walk as duplicateKey but no check.
func countKeys(raw []byte) int {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct{ object, expectKey bool }
	var stack []*frame
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{object: d == '{', expectKey: true})
			} else {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top == nil || !top.object {
			continue
		}
		if top.expectKey {
			n++
		}
		top.expectKey = !top.expectKey
	}
}
