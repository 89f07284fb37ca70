package policy

import (
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testNow is the fixed clock of the type tests: 2025-06-15 10:00 in
// Shanghai.
var testNow = time.Date(2025, 6, 15, 2, 0, 0, 0, time.UTC)

// idn completes 17 digits with their GB 11643 check character. It is
// written apart from checkIDNumber (2^(17-i) mod 11 weights), and
// TestIDN checks it against the standard's own examples.
func idn(s17 string) string {
	sum := 0
	for i := 0; i < 17; i++ {
		w := 1
		for k := 0; k < 17-i; k++ {
			w = w * 2 % 11
		}
		sum += int(s17[i]-'0') * w
	}
	return s17 + string("10X98765432"[sum%11])
}

func TestIDN(t *testing.T) {
	// GB 11643-1999's examples.
	for _, want := range []string{"11010519491231002X", "440524188001010014"} {
		if got := idn(want[:17]); got != want {
			t.Errorf("idn(%s) = %s, want %s", want[:17], got, want)
		}
	}
}

func loadFile(t testing.TB, name string) *Policy {
	t.Helper()
	p, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	return p
}

// typeCase is one value of one type: its JSON, and the reason it is
// refused with ("" if allowed) or the value it binds.
type typeCase struct {
	name   string
	value  string // JSON
	reason string
	bind   any // when allowed and not nil: the value bound
}

func strJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestPolicy_Evaluate_types(t *testing.T) {
	p := loadFile(t, "types.yaml")
	good := idn("11010519900307123") // born 1990-03-07
	goodX := "11010519491231002X"
	big := strings.Repeat("1", 1<<20)
	bigJSON := strJSON(big)

	for _, tt := range []struct {
		op    string
		cases []typeCase
	}{
		{"t.id_number", []typeCase{
			{"valid", strJSON(good), "", good},
			{"valid X", strJSON(goodX), "", goodX},
			{"lower-case x bound upper-case", strJSON("11010519491231002x"), "", goodX},
			{"escaped digits", `"\u0031` + good[1:] + `"`, "", good},
			{"born today", strJSON(idn("11010520250615001")), "", nil},
			{"born 1900-01-01", strJSON(idn("11010519000101001")), "", nil},
			{"leap day", strJSON(idn("11010520000229001")), "", nil},
			{"region 82", strJSON(idn("82000019800101001")), "", nil},
			{"wrong check digit", strJSON(good[:17] + string("0123456789X"[(strings.IndexByte("0123456789X", good[17])+1)%11])), ReasonBadIDNumber, nil},
			{"X where a digit belongs", strJSON(good[:17] + "X"), ReasonBadIDNumber, nil},
			{"standard's 1880 example", strJSON("440524188001010014"), ReasonBadIDNumber, nil},
			{"born 1899", strJSON(idn("11010518991231001")), ReasonBadIDNumber, nil},
			{"born tomorrow", strJSON(idn("11010520250616001")), ReasonBadIDNumber, nil},
			{"Feb 30", strJSON(idn("11010519900230001")), ReasonBadIDNumber, nil},
			{"Feb 29 of 2001", strJSON(idn("11010520010229001")), ReasonBadIDNumber, nil},
			{"month 13", strJSON(idn("11010519901301001")), ReasonBadIDNumber, nil},
			{"day 00", strJSON(idn("11010519900100001")), ReasonBadIDNumber, nil},
			{"region 10", strJSON(idn("10010519900101001")), ReasonBadIDNumber, nil},
			{"region 16", strJSON(idn("16010519900101001")), ReasonBadIDNumber, nil},
			{"region 72", strJSON(idn("72010519900101001")), ReasonBadIDNumber, nil},
			{"region 99", strJSON(idn("99010519900101001")), ReasonBadIDNumber, nil},
			{"first digit 0", strJSON(idn("01010519900101001")), ReasonBadIDNumber, nil},
			{"17 characters", strJSON(good[:17]), ReasonBadIDNumber, nil},
			{"19 characters", strJSON(good + "1"), ReasonBadIDNumber, nil},
			{"15-digit old form", strJSON("110105900307123"), ReasonBadIDNumber, nil},
			{"full-width digit", strJSON("１" + good[1:]), ReasonBadIDNumber, nil},
			{"Arabic-Indic digit", strJSON("١" + good[1:]), ReasonBadIDNumber, nil},
			{"letter inside", strJSON(good[:5] + "A" + good[6:]), ReasonBadIDNumber, nil},
			{"space inside", strJSON(good[:5] + " " + good[6:]), ReasonBadIDNumber, nil},
			{"NUL inside", `"` + good[:5] + `\u0000` + good[6:] + `"`, ReasonBadValue, nil},
			{"raw NUL", "\"" + good[:5] + "\x00" + good[6:] + "\"", ReasonBadValue, nil},
			{"invalid UTF-8", "\"" + good[:17] + "\xff\"", ReasonBadValue, nil},
			{"1 MB", bigJSON, ReasonBadIDNumber, nil},
			{"number", good[:17], ReasonBadType, nil},
			{"array", `["` + good + `"]`, ReasonBadType, nil},
			{"object", `{"$ne":null}`, ReasonBadType, nil},
			{"bool", `true`, ReasonBadType, nil},
			{"injection", strJSON("1' OR '1'='1"), ReasonBadIDNumber, nil},
		}},
		{"t.plate", []typeCase{
			{"ordinary", strJSON("京A12345"), "", "京A12345"},
			{"letters", strJSON("沪B7K2M9"), "", nil},
			{"small new-energy", strJSON("粤BD12345"), "", "粤BD12345"},
			{"small new-energy letter", strJSON("粤BFK1234"), "", nil},
			{"large new-energy", strJSON("粤B12345D"), "", nil},
			{"learner", strJSON("京A1234学"), "", nil},
			{"trailer", strJSON("苏E0001挂"), "", nil},
			{"Hong Kong", strJSON("粤Z1234港"), "", nil},
			{"every province", strJSON("琼A12345"), "", nil},
			{"office I", strJSON("京I12345"), ReasonBadPlate, nil},
			{"office O", strJSON("京O12345"), ReasonBadPlate, nil},
			{"O in tail", strJSON("京A1234O"), ReasonBadPlate, nil},
			{"I in tail", strJSON("京AI2345"), ReasonBadPlate, nil},
			{"lower case", strJSON("京a12345"), ReasonBadPlate, nil},
			{"full-width digit", strJSON("京A１2345"), ReasonBadPlate, nil},
			{"full-width letter", strJSON("京Ａ12345"), ReasonBadPlate, nil},
			{"Cyrillic A", strJSON("京\u041012345"), ReasonBadPlate, nil},
			{"Greek Alpha", strJSON("京\u039112345"), ReasonBadPlate, nil},
			{"Taiwan is not a plate province", strJSON("台A12345"), ReasonBadPlate, nil},
			{"Latin province", strJSON("JA12345"), ReasonBadPlate, nil},
			{"too short", strJSON("京A1234"), ReasonBadPlate, nil},
			{"seven after office", strJSON("京A1234567"), ReasonBadPlate, nil},
			{"six, not new-energy", strJSON("京AA12345"), ReasonBadPlate, nil},
			{"new-energy with letter in digits", strJSON("粤BD1234A"), ReasonBadPlate, nil},
			{"suffix after five", strJSON("京A12345学"), ReasonBadPlate, nil},
			{"two suffixes", strJSON("京A123学学"), ReasonBadPlate, nil},
			{"space", strJSON("京A 12345"), ReasonBadPlate, nil},
			{"zero-width joiner", strJSON("京\u200dA12345"), ReasonBadValue, nil},
			{"NUL", `"京A1234\u0000"`, ReasonBadValue, nil},
			{"empty", `""`, ReasonBadPlate, nil},
			{"1 MB", bigJSON, ReasonBadPlate, nil},
			{"number", `12345`, ReasonBadType, nil},
			{"injection", strJSON("京A'--"), ReasonBadPlate, nil},
		}},
		{"t.mobile", []typeCase{
			{"valid", strJSON("13812345678"), "", "13812345678"},
			{"19x", strJSON("19912345678"), "", nil},
			{"12x", strJSON("12812345678"), ReasonBadMobile, nil},
			{"10 digits", strJSON("1381234567"), ReasonBadMobile, nil},
			{"12 digits", strJSON("138123456789"), ReasonBadMobile, nil},
			{"country code", strJSON("+8613812345678"), ReasonBadMobile, nil},
			{"dashes", strJSON("138-1234-5678"), ReasonBadMobile, nil},
			{"full-width digit", strJSON("1381234567８"), ReasonBadMobile, nil},
			{"NUL", `"1381234567\u0000"`, ReasonBadValue, nil},
			{"number", `13812345678`, ReasonBadType, nil},
			{"1 MB", bigJSON, ReasonBadMobile, nil},
		}},
		{"t.plate_type", []typeCase{
			{"01", `"01"`, "", "01"},
			{"02", `"02"`, "", nil},
			{"27", `"27"`, "", nil},
			{"51", `"51"`, "", nil},
			{"52", `"52"`, "", nil},
			{"99", `"99"`, "", nil},
			{"00", `"00"`, ReasonBadPlateType, nil},
			{"28", `"28"`, ReasonBadPlateType, nil},
			{"50", `"50"`, ReasonBadPlateType, nil},
			{"53", `"53"`, ReasonBadPlateType, nil},
			{"98", `"98"`, ReasonBadPlateType, nil},
			{"one digit", `"2"`, ReasonBadPlateType, nil},
			{"three digits", `"002"`, ReasonBadPlateType, nil},
			{"full-width", `"０２"`, ReasonBadPlateType, nil},
			{"number", `2`, ReasonBadType, nil},
			{"1 MB", bigJSON, ReasonBadPlateType, nil},
		}},
		{"t.date", []typeCase{ // today-30d .. today+90d, today 2025-06-15
			{"today", `"2025-06-15"`, "", "2025-06-15"},
			{"lowest", `"2025-05-16"`, "", nil},
			{"highest", `"2025-09-13"`, "", nil},
			{"a day too early", `"2025-05-15"`, ReasonOutOfRange, nil},
			{"a day too late", `"2025-09-14"`, ReasonOutOfRange, nil},
			{"Feb 30", `"2025-02-30"`, ReasonBadDate, nil},
			{"short form", `"2025-6-15"`, ReasonBadDate, nil},
			{"timestamp", `"2025-06-15T00:00:00Z"`, ReasonBadDate, nil},
			{"full-width digits", `"２０２５-06-15"`, ReasonBadDate, nil},
			{"slashes", `"2025/06/15"`, ReasonBadDate, nil},
			{"number", `20250615`, ReasonBadType, nil},
			{"1 MB", bigJSON, ReasonBadDate, nil},
		}},
		{"t.date_fixed", []typeCase{
			{"inside", `"2024-02-29"`, "", nil},
			{"first", `"2024-01-01"`, "", nil},
			{"last", `"2024-12-31"`, "", nil},
			{"before", `"2023-12-31"`, ReasonOutOfRange, nil},
			{"after", `"2025-01-01"`, ReasonOutOfRange, nil},
		}},
		{"t.date_range", []typeCase{ // 2020-01-01 .. today, at most 31 days
			{"valid", `{"from":"2025-06-01","to":"2025-06-15"}`, "", nil},
			{"one day", `{"to":"2025-06-15","from":"2025-06-15"}`, "", nil},
			{"31 days", `{"from":"2025-05-16","to":"2025-06-15"}`, "", nil},
			{"escaped key", `{"\u0066rom":"2025-06-01","to":"2025-06-02"}`, "", nil},
			{"32 days", `{"from":"2025-05-15","to":"2025-06-15"}`, ReasonBadRange, nil},
			{"reversed", `{"from":"2025-06-15","to":"2025-06-14"}`, ReasonBadRange, nil},
			{"missing to", `{"from":"2025-06-01"}`, ReasonBadRange, nil},
			{"missing from", `{"to":"2025-06-01"}`, ReasonBadRange, nil},
			{"null half", `{"from":"2025-06-01","to":null}`, ReasonBadRange, nil},
			{"empty object", `{}`, ReasonBadRange, nil},
			{"extra key", `{"from":"2025-06-01","to":"2025-06-02","x":1}`, ReasonBadRange, nil},
			{"repeated key", `{"from":"2025-06-01","from":"2025-06-01","to":"2025-06-02"}`, ReasonBadRange, nil},
			{"in the future", `{"from":"2025-06-10","to":"2025-06-16"}`, ReasonOutOfRange, nil},
			{"before min", `{"from":"2019-12-31","to":"2020-01-05"}`, ReasonOutOfRange, nil},
			{"half not a date", `{"from":"2025-06-31","to":"2025-07-01"}`, ReasonBadDate, nil},
			{"half a number", `{"from":20250601,"to":"2025-06-02"}`, ReasonBadType, nil},
			{"half with NUL", `{"from":"2025-06-01\u0000","to":"2025-06-02"}`, ReasonBadValue, nil},
			{"string", `"2025-06-01/2025-06-15"`, ReasonBadType, nil},
			{"array", `["2025-06-01","2025-06-15"]`, ReasonBadType, nil},
			{"malformed inside", `{"from":,"to":"2025-06-02"}`, ReasonBadParams, nil},
			{"1 MB", `{"from":` + bigJSON + `,"to":"2025-06-02"}`, ReasonTooLong, nil},
		}},
		{"t.string", []typeCase{
			{"fits", strJSON("王小明abcde"), "", nil},
			{"surrogate pair is one character", `"\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00\ud83d\ude00"`, "", nil},
			{"too long", strJSON("123456789"), ReasonTooLong, nil},
			{"NUL", `"a\u0000"`, ReasonBadValue, nil},
			{"raw control", "\"a\x01\"", ReasonBadValue, nil},
			{"DEL", "\"a\x7f\"", ReasonBadValue, nil},
			{"lone surrogate", `"\udc00"`, ReasonBadValue, nil},
			{"invalid UTF-8", "\"\xc3\x28\"", ReasonBadValue, nil},
			{"overlong UTF-8", "\"\xc0\xaf\"", ReasonBadValue, nil},
			{"bad escape", `"\x41"`, ReasonBadParams, nil},
			{"1 MB", bigJSON, ReasonTooLong, nil},
			{"number", `1`, ReasonBadType, nil},
		}},
		{"t.enum", []typeCase{
			{"listed", strJSON("甲"), "", "甲"},
			{"full-width b", strJSON("ｂ"), ReasonNotInEnum, nil},
			{"1 MB", bigJSON, ReasonNotInEnum, nil},
			{"number", `1`, ReasonBadType, nil},
		}},
		{"t.int", []typeCase{
			{"valid", `-5`, "", int64(-5)},
			{"string", `"1"`, ReasonBadType, nil},
			{"fraction", `1.5`, ReasonBadType, nil},
			{"leading zero", `01`, ReasonBadParams, nil},
			{"lone minus", `-`, ReasonBadParams, nil},
			{"out of range", `6`, ReasonOutOfRange, nil},
			{"min int64", `-9223372036854775808`, ReasonOutOfRange, nil},
			{"below min int64", `-9223372036854775809`, ReasonBadType, nil},
			{"1 MB", big, ReasonBadType, nil},
		}},
	} {
		for _, tc := range tt.cases {
			t.Run(tt.op+"/"+tc.name, func(t *testing.T) {
				params := `{"v":` + tc.value + `}`
				// That 1 MB is refused without being copied is
				// TestPolicy_Evaluate_hugeValueNotCopied's.
				c, err := p.Evaluate(Request{Operation: tt.op, Params: json.RawMessage(params), Now: testNow})
				if tc.reason == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					if tc.bind != nil {
						if na := c.Args[0].(sql.NamedArg); na.Value != tc.bind || na.Name != "v" {
							t.Fatalf("bound %#v, want %#v", na, tc.bind)
						}
					}
					return
				}
				checkReject(t, err, tc.reason, "v")
				// The message never repeats the value.
				var s string
				if json.Unmarshal([]byte(tc.value), &s) == nil && len(s) >= 4 && strings.Contains(err.Error(), s) {
					t.Fatalf("message %q repeats the value", err)
				}
				if len(err.Error()) > 200 {
					t.Fatalf("message of %d bytes", len(err.Error()))
				}
			})
		}
	}
}

// checkReject fails unless err is a *RejectError with the reason and the
// parameter, whose message names the parameter.
func checkReject(t *testing.T, err error, reason, param string) *RejectError {
	t.Helper()
	var rej *RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("got %v (%T), want *RejectError %s", err, err, reason)
	}
	if rej.Reason != reason || rej.Param != param {
		t.Fatalf("got reason %q param %q (%q), want %q %q", rej.Reason, rej.Param, rej.Message, reason, param)
	}
	if rej.Param != "" && !strings.Contains(rej.Message, rej.Param) {
		t.Fatalf("message %q does not name parameter %s", rej.Message, rej.Param)
	}
	if !slices.Contains(Reasons, rej.Reason) {
		t.Fatalf("reason %q is not listed in Reasons", rej.Reason)
	}
	return rej
}

func TestPolicy_Evaluate_dateRangeArgs(t *testing.T) {
	p := loadFile(t, "types.yaml")
	c, err := p.Evaluate(Request{Operation: "t.date_range", Params: json.RawMessage(`{"v":{"to":"2025-06-15","from":"2025-06-01"}}`), Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{sql.Named("v_from", "2025-06-01"), sql.Named("v_to", "2025-06-15")}
	if !slices.Equal(c.Args, want) {
		t.Fatalf("args %#v, want %#v", c.Args, want)
	}
	// An optional range that is absent binds both halves as NULL.
	p2 := loadFile(t, "full.yaml")
	c, err = p2.Evaluate(Request{Client: "portal", Subject: "11010519491231002X", Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`), Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Args {
		na := a.(sql.NamedArg)
		if strings.HasPrefix(na.Name, "period_") && na.Value != nil {
			t.Errorf("%s = %v, want nil", na.Name, na.Value)
		}
	}
}

// TestPolicy_Evaluate_timezone shows that "today" is the policy's day:
// at 2025-06-14 20:00 UTC it is already 06-15 in Shanghai.
func TestPolicy_Evaluate_timezone(t *testing.T) {
	p := loadFile(t, "types.yaml")
	if p.Timezone != "Asia/Shanghai" || p.Location().String() != "Asia/Shanghai" {
		t.Fatalf("timezone %q %v", p.Timezone, p.Location())
	}
	now := time.Date(2025, 6, 14, 20, 0, 0, 0, time.UTC)
	params := json.RawMessage(`{"v":{"from":"2025-06-15","to":"2025-06-15"}}`)
	if _, err := p.Evaluate(Request{Operation: "t.date_range", Params: params, Now: now}); err != nil {
		t.Fatalf("today in Shanghai refused: %v", err)
	}
	utc, err := Parse("utc.yaml", []byte("version: 1\ntimezone: UTC\noperations:\n  - name: t\n    mode: read\n    params: {v: {type: date, max: today}}\n    statement: SELECT :v\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = utc.Evaluate(Request{Operation: "t", Params: json.RawMessage(`{"v":"2025-06-15"}`), Now: now})
	checkReject(t, err, ReasonOutOfRange, "v")
	// A zero Now is the current time.
	if _, err := utc.Evaluate(Request{Operation: "t", Params: json.RawMessage(`{"v":"` + time.Now().UTC().Format(time.DateOnly) + `"}`)}); err != nil {
		t.Fatalf("today refused with zero Now: %v", err)
	}
}

func TestCheckIDNumber_allRegions(t *testing.T) {
	today := daysFromCivil(2025, 6, 15)
	n := 0
	for code := 0; code < 100; code++ {
		id := idn(string(rune('0'+code/10)) + string(rune('0'+code%10)) + "010519900101001")
		if _, why := checkIDNumber(id, today); why == "" {
			n++
		}
	}
	// 5+3+7+6+5+5 provinces, Taiwan, Hong Kong, Macao.
	if n != 34 {
		t.Fatalf("%d region codes accepted, want 34", n)
	}
}

func TestDaysFromCivil(t *testing.T) {
	for _, d := range []time.Time{
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := daysFromCivil(d.Year(), int(d.Month()), d.Day()), int(d.Unix()/86400); got != want {
			t.Errorf("%s: %d, want %d", d.Format(time.DateOnly), got, want)
		}
	}
}

func TestParseDateBound(t *testing.T) {
	for _, tc := range []struct {
		in  string
		rel bool
		day int
		err bool
	}{
		{"today", true, 0, false},
		{"today-30d", true, -30, false},
		{"today+90d", true, 90, false},
		{"2024-01-01", false, daysFromCivil(2024, 1, 1), false},
		{"today-30", false, 0, true},
		{"today*3d", false, 0, true},
		{"today-d", false, 0, true},
		{"today-1h", false, 0, true},
		{"today+36601d", false, 0, true},
		{"today-99999999999999999999d", false, 0, true},
		{"yesterday", false, 0, true},
		{"2023-02-29", false, 0, true},
	} {
		b, err := parseDateBound(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || b.relative != tc.rel || b.day != tc.day {
			t.Errorf("%q = %+v, %v", tc.in, b, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		str  string
	}{
		{"10/1m", Rate{10, time.Minute}, "10/1m"},
		{"1000/1h", Rate{1000, time.Hour}, "1000/1h"},
		{"1/1s", Rate{1, time.Second}, "1/1s"},
		{"1000000/24h", Rate{1000000, 24 * time.Hour}, "1000000/24h"},
		{"5/90s", Rate{5, 90 * time.Second}, "5/90s"},
		{"5/1h30m", Rate{5, 90 * time.Minute}, "5/90m"},
	} {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseRate(%q) = %v (%q), %v; want %v %q", tc.in, got, got.String(), err, tc.want, tc.str)
		}
		if again, err := ParseRate(got.String()); err != nil || again != got {
			t.Errorf("%q does not round-trip: %v %v", got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "10", "10/", "/1m", "0/1m", "-1/1m", "+1/1m", "1000001/1m", "10/999ms", "10/25h", "10/m", "ten/1m", "10/1m/1m"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", bad, r)
		}
	}
	if !(Rate{}).IsZero() || (Rate{}).String() != "" || (Rate{N: 1, Per: time.Second}).IsZero() {
		t.Error("zero Rate")
	}
}
