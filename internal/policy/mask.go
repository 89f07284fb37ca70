package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maskFull is what a value masked in full becomes, whatever its length.
const maskFull = "****"

// MaskValue masks one value:
//
//   - name keeps the first character and adds one '*' ("王小明" → "王*"),
//     hiding the name's length; a one-character value becomes "*".
//   - id_number keeps the first 6 and the last 4 characters and stars
//     the rest ("110101199003071234" → "110101********1234"); a value of
//     10 characters or fewer is all stars.
//   - mobile keeps the first 3 and the last 4 characters and stars the
//     rest ("13812345678" → "138****5678"); a value of 7 characters or
//     fewer is all stars.
//   - full, and any kind this package does not know (failing closed),
//     gives "****".
//
// Characters are Unicode code points. The empty string stays empty.
func MaskValue(kind, value string) string {
	if value == "" {
		return ""
	}
	n := utf8.RuneCountInString(value)
	switch kind {
	case MaskName:
		if n == 1 {
			return "*"
		}
		_, size := utf8.DecodeRuneInString(value)
		return value[:size] + "*"
	case MaskIDNumber:
		return keepEnds(value, n, 6, 4)
	case MaskMobile:
		return keepEnds(value, n, 3, 4)
	}
	return maskFull
}

// keepEnds keeps the first head and last tail characters of a value of n
// characters and stars the rest, or stars all of a value too short to
// keep anything safely.
func keepEnds(value string, n, head, tail int) string {
	if n <= head+tail {
		return strings.Repeat("*", n)
	}
	var b strings.Builder
	b.Grow(len(value))
	i := 0
	for _, r := range value {
		if i < head || i >= n-tail {
			b.WriteRune(r)
		} else {
			b.WriteByte('*')
		}
		i++
	}
	return b.String()
}

// MaskRow masks the columns the operation's mask declares in one result
// row, in place. A string value is masked with MaskValue and a []byte
// value is masked as text. Any other non-nil value (an INTEGER or REAL
// column) is masked in its decimal text form, so it becomes a string: an
// ID number stored as a number is masked like one stored as text. nil
// (SQL NULL) stays nil. Columns the row lacks are left alone.
func (o *Operation) MaskRow(row map[string]any) {
	if o == nil {
		return
	}
	for col, kind := range o.Mask {
		v, ok := row[col]
		if !ok {
			continue
		}
		switch v := v.(type) {
		case nil:
		case string:
			row[col] = MaskValue(kind, v)
		case []byte:
			row[col] = MaskValue(kind, string(v))
		default:
			row[col] = MaskValue(kind, fmt.Sprint(v))
		}
	}
}
