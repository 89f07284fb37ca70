package policy

import (
	"errors"
	"fmt"
	"strings"
)

// scannedSQL is what the loader needs to know about a statement without a
// database: its first keyword and its named placeholders.
type scannedSQL struct {
	keyword      string   // first keyword, upper case
	placeholders []string // :name placeholders in order of first use
	hasSelect    bool     // the keyword SELECT appears: the statement reads tables
}

// scanSQL reads an SQLite statement just far enough to find its first
// keyword and its placeholders, skipping string literals, quoted
// identifiers and comments. It refuses anonymous and non-colon placeholders
// (?, ?NNN, @x, $x), more than one statement, and unterminated literals or
// comments. It is a lexer, not a parser: a statement it accepts may still
// fail to prepare, which the sample's tests and the later read-only proof
// catch.
func scanSQL(s string) (scannedSQL, error) {
	var out scannedSQL
	seen := map[string]bool{}
	i, n := 0, len(s)
	ended := false // a ';' was seen; only blanks and comments may follow
	for i < n {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < n && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				i = n
			} else {
				i += j + 1
			}
			continue
		case c == '/' && i+1 < n && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out, errors.New("unterminated /* comment")
			}
			i += 2 + j + 2
			continue
		}
		if ended {
			return out, errors.New("more than one SQL statement")
		}
		switch {
		case c == ';':
			ended = true
			i++
		case c == '\'' || c == '"' || c == '`':
			j, err := skipQuoted(s, i, c)
			if err != nil {
				return out, err
			}
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return out, errors.New("unterminated [identifier]")
			}
			i += j + 1
		case c == ':':
			j := i + 1
			for j < n && isIdentByte(s[j]) {
				j++
			}
			if j == i+1 {
				return out, errors.New("':' not followed by a parameter name")
			}
			name := s[i+1 : j]
			if !seen[name] {
				seen[name] = true
				out.placeholders = append(out.placeholders, name)
			}
			i = j
		case c == '?' || c == '@' || c == '$':
			return out, fmt.Errorf("placeholder %q: only :name placeholders are allowed", string(c))
		case isIdentByte(c):
			j := i
			for j < n && isIdentByte(s[j]) {
				j++
			}
			if out.keyword == "" {
				out.keyword = strings.ToUpper(s[i:j])
			}
			if strings.EqualFold(s[i:j], "SELECT") {
				out.hasSelect = true
			}
			i = j
		default:
			if out.keyword == "" {
				// Something other than a keyword opens the statement,
				// such as "(" or a stray character; record it so the mode
				// check refuses it.
				out.keyword = string(c)
			}
			i++
		}
	}
	if out.keyword == "" {
		return out, errors.New("empty statement")
	}
	return out, nil
}

// skipQuoted returns the index after the quoted token that starts at i with
// quote q; a doubled quote inside is an escaped quote.
func skipQuoted(s string, i int, q byte) (int, error) {
	for j := i + 1; j < len(s); j++ {
		if s[j] != q {
			continue
		}
		if j+1 < len(s) && s[j+1] == q {
			j++
			continue
		}
		return j + 1, nil
	}
	return 0, fmt.Errorf("unterminated %c quote", q)
}

// isIdentByte reports whether b may appear in an unquoted identifier or a
// placeholder name. Bytes of multi-byte UTF-8 characters count, as SQLite
// allows them in identifiers.
func isIdentByte(b byte) bool {
	return b == '_' || b >= 0x80 || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z') || ('0' <= b && b <= '9')
}
