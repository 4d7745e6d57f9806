package api

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"

	"aitokens/pkg/token"
)

// checkStrictJSON refuses what encoding/json would read loosely: a key given twice in one
// object (encoding/json keeps the last, matching keys without regard to case, so
// {"name":"a","Name":"b"} is a duplicate too), and a \u escape of a lone UTF-16 surrogate
// (encoding/json replaces it with U+FFFD, so what would be sealed is not what was sent).
// Syntax errors are left to the decoder, which names their position.
func checkStrictJSON(raw []byte) error {
	if pos, ok := loneSurrogate(raw); ok {
		return token.InvalidField("body", "the request body holds a lone UTF-16 surrogate escape at byte "+strconv.Itoa(pos))
	}
	return duplicateKey(raw)
}

// object is one open JSON object while walking the tokens: the keys seen (folded as
// encoding/json matches them) and whether the next string is a key.
type object struct {
	path      string
	keys      map[string]bool
	expectKey bool
}

func duplicateKey(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*object // nil entries stand for arrays
	lastKey := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return nil // the decoder proper reports syntax errors with their position
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				path := ""
				if top != nil {
					top.expectKey = true // the container is the value of lastKey
					path = joinPath(top.path, lastKey)
				}
				if d == '{' {
					stack = append(stack, &object{path: path, keys: map[string]bool{}, expectKey: true})
				} else {
					stack = append(stack, nil)
				}
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top == nil {
			continue // a value in an array or at the top
		}
		if !top.expectKey {
			top.expectKey = true
			continue
		}
		key, _ := tok.(string)
		folded := strings.ToLower(key)
		if top.keys[folded] {
			field := joinPath(top.path, key)
			if len(field) > 64 {
				field = "body"
			}
			return token.InvalidField(field, "the key "+strconv.Quote(field)+" is given more than once")
		}
		top.keys[folded] = true
		top.expectKey = false
		lastKey = key
	}
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// loneSurrogate finds a \uD800-\uDFFF escape inside a JSON string that is not half of a
// high-low pair, and returns its byte offset.
func loneSurrogate(raw []byte) (int, bool) {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				switch {
				case ok && r >= 0xD800 && r <= 0xDBFF: // high: a low one must follow
					if low, ok := hex4(raw, i+8); !ok || raw[i+6] != '\\' || raw[i+7] != 'u' || low < 0xDC00 || low > 0xDFFF {
						return i, true
					}
					i += 11
					continue
				case ok && r >= 0xDC00 && r <= 0xDFFF: // a low one without its high one
					return i, true
				}
			}
			i++ // skip the escaped character
		}
	}
	return 0, false
}

// hex4 reads four hex digits at raw[at:].
func hex4(raw []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[at:at+4]), 16, 16)
	return rune(n), err == nil
}
