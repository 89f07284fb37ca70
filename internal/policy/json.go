package policy

import (
	"bytes"
	"encoding/json"
)

// objectScanner walks the members of one JSON object without decoding
// them: it finds where each key and value starts and ends, and leaves the
// values to the parameter checks, which validate what they use. Each byte
// is looked at a bounded number of times and nothing is allocated, so an
// over-long value is refused after one fast pass. It does not check that
// an object or array value is well formed inside; a check that uses such a
// value validates it first.
type objectScanner struct {
	b []byte
	i int
	n int // members read so far
}

func (s *objectScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// open reads the opening brace.
func (s *objectScanner) open() bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '{' {
		s.i++
		return true
	}
	return false
}

// next reads the next member. It returns done after the closing brace,
// and ok false on a syntax error.
func (s *objectScanner) next() (key, val []byte, done, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return nil, nil, false, false
	}
	if s.b[s.i] == '}' {
		s.i++
		return nil, nil, true, true
	}
	if s.n > 0 {
		if s.b[s.i] != ',' {
			return nil, nil, false, false
		}
		s.i++
		s.ws()
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false, false
	}
	end, ok := skipString(s.b, s.i)
	if !ok {
		return nil, nil, false, false
	}
	key = s.b[s.i:end]
	s.i = end
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return nil, nil, false, false
	}
	s.i++
	s.ws()
	end, ok = skipValue(s.b, s.i)
	if !ok {
		return nil, nil, false, false
	}
	val = s.b[s.i:end]
	s.i = end
	s.n++
	return key, val, false, true
}

// end reports whether only white space follows the object.
func (s *objectScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// skipString returns the index after the string that starts with the
// quote at b[i].
func skipString(b []byte, i int) (int, bool) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		q := j + k
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
}

// skipValue returns the index after the value that starts at b[i]:
// a string, an object or array (brackets balanced, strings skipped), or a
// run of literal characters (number, true, false, null), which the caller
// validates.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ':', ' ', '\t', '\n', '\r', '"', '{', '[':
			if j == i {
				return 0, false
			}
			return j, true
		}
		j++
	}
	if j == i {
		return 0, false
	}
	return j, true
}

// isNull reports whether a value is the literal null.
func isNull(v []byte) bool { return string(v) == "null" }

// keyBytes returns a member's key without its quotes, unescaped if it
// has escapes; ok is false if it is not a valid JSON string.
func keyBytes(raw []byte) ([]byte, bool) {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		for _, c := range inner {
			if c < 0x20 {
				return nil, false
			}
		}
		return inner, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}
