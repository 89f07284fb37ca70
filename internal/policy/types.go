package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds the checks of the domain types. They work on bytes and
// integers, not regular expressions, and allocate nothing: a check digit
// and a calendar date are beyond what a pattern can say.

// Characters each type admits at most; longer input is too_long before it
// is looked at further.
const (
	idNumberLen   = 18
	plateMaxChars = 8 // province, office letter, six characters
	mobileLen     = 11
	plateTypeLen  = 2
	dateLen       = 10 // YYYY-MM-DD
	// dateRangeMaxJSON bounds the JSON text of a date_range value.
	dateRangeMaxJSON = 256
)

// idWeights are the GB 11643-1999 weights of the first 17 digits
// (2^(18-i) mod 11), and idCheck maps the weighted sum mod 11 to the check
// character (ISO 7064 MOD 11-2).
var (
	idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	idCheck   = "10X98765432"
)

// idProvince reports whether the first two digits of an ID number are a
// province-level region code of GB/T 2260 (plus 71 Taiwan, 81 Hong Kong,
// 82 Macao).
func idProvince(code int) bool {
	switch {
	case 11 <= code && code <= 15, 21 <= code && code <= 23, 31 <= code && code <= 37,
		41 <= code && code <= 46, 50 <= code && code <= 54, 61 <= code && code <= 65:
		return true
	}
	return code == 71 || code == 81 || code == 82
}

// minBirthDay is 1900-01-01 as a day number: no living resident was born
// earlier.
var minBirthDay = daysFromCivil(1900, 1, 1)

// checkIDNumber checks a resident ID number and returns it with a
// lower-case check character x made upper case. why is "" when the number
// is valid, else a phrase that says what is wrong without repeating it.
// today is the current day number; it bounds the birth date.
func checkIDNumber(s string, today int) (norm, why string) {
	if len(s) != idNumberLen {
		return "", "must have 18 characters"
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "", "must be 17 ASCII digits and a check digit or X"
		}
		sum += int(c-'0') * idWeights[i]
	}
	last := s[17]
	if (last < '0' || last > '9') && last != 'X' && last != 'x' {
		return "", "must be 17 ASCII digits and a check digit or X"
	}
	if s[0] == '0' || !idProvince(int(s[0]-'0')*10+int(s[1]-'0')) {
		return "", "has no such region"
	}
	y := atoi4(s[6:10])
	m := int(s[10]-'0')*10 + int(s[11]-'0')
	d := int(s[12]-'0')*10 + int(s[13]-'0')
	if !validDate(y, m, d) {
		return "", "has no such birth date"
	}
	if day := daysFromCivil(y, m, d); day < minBirthDay || day > today {
		return "", "has an impossible birth date"
	}
	want := idCheck[sum%11]
	if last == 'x' {
		last = 'X'
	}
	if last != want {
		return "", "has a wrong check digit"
	}
	if s[17] == 'x' {
		return s[:17] + "X", ""
	}
	return s, ""
}

// plateProvinces are the abbreviations of the 31 mainland province-level
// divisions, the first character of a plate.
const plateProvinces = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

// plateSuffixes may end an ordinary plate in place of its fifth character:
// trailer, learner, police, Hong Kong and Macao.
const plateSuffixes = "挂学警港澳"

// checkPlate checks a plate number; why is "" when it is valid.
func checkPlate(s string) (why string) {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError || !strings.ContainsRune(plateProvinces, r) {
		return "must start with a province character"
	}
	s = s[size:]
	if len(s) == 0 || !plateLetter(s[0]) {
		return "must have an office letter A-Z (without I and O) after the province"
	}
	t := s[1:]
	switch {
	case len(t) == 5 && plateAlnum(t[0]) && plateAlnum(t[1]) && plateAlnum(t[2]) && plateAlnum(t[3]) && plateAlnum(t[4]):
		return ""
	case len(t) == 6 && (t[0] == 'D' || t[0] == 'F') && plateAlnum(t[1]) && digits(t[2:]):
		return "" // small new-energy vehicle
	case len(t) == 6 && digits(t[:5]) && (t[5] == 'D' || t[5] == 'F'):
		return "" // large new-energy vehicle
	case len(t) > 4 && plateAlnum(t[0]) && plateAlnum(t[1]) && plateAlnum(t[2]) && plateAlnum(t[3]):
		if r, size := utf8.DecodeRuneInString(t[4:]); size == len(t)-4 && r != utf8.RuneError && strings.ContainsRune(plateSuffixes, r) {
			return ""
		}
	}
	return "must have five letters or digits (without I and O), or a new-energy number, after the office letter"
}

// plateLetter reports whether c is an upper-case ASCII letter other than I
// and O, which plates leave out as too like 1 and 0.
func plateLetter(c byte) bool { return 'A' <= c && c <= 'Z' && c != 'I' && c != 'O' }

func plateAlnum(c byte) bool { return plateLetter(c) || ('0' <= c && c <= '9') }

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkMobile checks a mainland mobile number: 11 ASCII digits, 1 then 3-9.
func checkMobile(s string) (why string) {
	if len(s) != mobileLen || s[0] != '1' || s[1] < '3' || s[1] > '9' || !digits(s) {
		return "must be 11 ASCII digits starting 13 to 19"
	}
	return ""
}

// PlateType is one code of GA 24.7 号牌种类 (plate type).
type PlateType struct {
	Code    string // two digits
	Name    string // the standard's Chinese name
	English string
}

// PlateTypes lists the plate type codes the plate_type type accepts.
var PlateTypes = []PlateType{
	{"01", "大型汽车", "large vehicle"},
	{"02", "小型汽车", "small vehicle"},
	{"03", "使馆汽车", "embassy vehicle"},
	{"04", "领馆汽车", "consulate vehicle"},
	{"05", "境外汽车", "vehicle from outside the mainland"},
	{"06", "外籍汽车", "foreign vehicle"},
	{"07", "普通摩托车", "motorcycle"},
	{"08", "轻便摩托车", "moped"},
	{"09", "使馆摩托车", "embassy motorcycle"},
	{"10", "领馆摩托车", "consulate motorcycle"},
	{"11", "境外摩托车", "motorcycle from outside the mainland"},
	{"12", "外籍摩托车", "foreign motorcycle"},
	{"13", "低速车", "low-speed vehicle"},
	{"14", "拖拉机", "tractor"},
	{"15", "挂车", "trailer"},
	{"16", "教练汽车", "learner vehicle"},
	{"17", "教练摩托车", "learner motorcycle"},
	{"18", "试验汽车", "test vehicle"},
	{"19", "试验摩托车", "test motorcycle"},
	{"20", "临时入境汽车", "temporary entry vehicle"},
	{"21", "临时入境摩托车", "temporary entry motorcycle"},
	{"22", "临时行驶车", "temporary licence vehicle"},
	{"23", "警用汽车", "police vehicle"},
	{"24", "警用摩托", "police motorcycle"},
	{"25", "原农机号牌", "former agricultural machinery"},
	{"26", "香港入出境车", "Hong Kong cross-border vehicle"},
	{"27", "澳门入出境车", "Macao cross-border vehicle"},
	{"51", "大型新能源汽车", "large new-energy vehicle"},
	{"52", "小型新能源汽车", "small new-energy vehicle"},
	{"99", "其他号牌", "other"},
}

// checkPlateType checks a plate type code.
func checkPlateType(s string) (why string) {
	if len(s) == plateTypeLen && digits(s) {
		n := int(s[0]-'0')*10 + int(s[1]-'0')
		if (1 <= n && n <= 27) || n == 51 || n == 52 || n == 99 {
			return ""
		}
	}
	return "must be a two-digit GA 24.7 plate type code"
}

// Dates are day numbers, days since 1970-01-01 in the proleptic Gregorian
// calendar, so that comparing and counting days is integer arithmetic.

// daysFromCivil returns the day number of y-m-d (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// validDate reports whether y-m-d is a calendar date.
func validDate(y, m, d int) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}

// atoi4 reads four ASCII digits the caller has checked.
func atoi4(s string) int {
	return int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
}

// parseDate reads a date written YYYY-MM-DD and returns its day number.
func parseDate(s string) (int, bool) {
	if len(s) != dateLen || s[4] != '-' || s[7] != '-' || !digits(s[:4]) || !digits(s[5:7]) || !digits(s[8:]) {
		return 0, false
	}
	y, m, d := atoi4(s[:4]), int(s[5]-'0')*10+int(s[6]-'0'), int(s[8]-'0')*10+int(s[9]-'0')
	if !validDate(y, m, d) {
		return 0, false
	}
	return daysFromCivil(y, m, d), true
}

// dateBound is a date's bound: a fixed day, or today plus some days.
type dateBound struct {
	relative bool
	day      int // the day number, or the offset from today
}

// at returns the bound's day number given today's.
func (b *dateBound) at(today int) int {
	if b.relative {
		return today + b.day
	}
	return b.day
}

// parseDateBound reads YYYY-MM-DD, today, today-Nd or today+Nd.
func parseDateBound(s string) (*dateBound, error) {
	if day, ok := parseDate(s); ok {
		return &dateBound{day: day}, nil
	}
	rest, ok := strings.CutPrefix(s, "today")
	if !ok {
		return nil, fmt.Errorf("%q: want a date YYYY-MM-DD, today, today-Nd or today+Nd", s)
	}
	if rest == "" {
		return &dateBound{relative: true}, nil
	}
	sign := rest[0]
	num, ok := strings.CutSuffix(rest[1:], "d")
	if (sign != '+' && sign != '-') || !ok || num == "" || !digits(num) {
		return nil, fmt.Errorf("%q: want today-Nd or today+Nd, with N a number of days", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n > MaxRelativeDays {
		return nil, fmt.Errorf("%q: at most %d days from today", s, MaxRelativeDays)
	}
	if sign == '-' {
		n = -n
	}
	return &dateBound{relative: true, day: n}, nil
}

// errBoundOrder is returned when a policy's min is after its max.
var errBoundOrder = errors.New("min is after max")

// boundOrder checks that lo is not after hi wherever both are of the same
// kind; a fixed and a relative bound are compared only at evaluation.
func boundOrder(lo, hi *dateBound) error {
	if lo != nil && hi != nil && lo.relative == hi.relative && lo.day > hi.day {
		return errBoundOrder
	}
	return nil
}
