package policy

import (
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

const (
	subjA = "11010519491231002X" // the subject of most requests
	subjB = "440524190001010017" // someone else (check digit from idn)
)

// subjectCases are requests against testdata/full.yaml with their expected
// decisions; the catalogue test replays them too.
var subjectCases = []struct {
	name           string
	r              Request
	reason, param  string
	subject, idArg string // when allowed: Checked.Subject and the bound id_number
}{
	{"bound from the subject", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, "", "", subjA, subjA},
	{"lower-case x subject", Request{Client: "portal", Subject: strings.ToLower(subjA), Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, "", "", subjA, subjA},
	{"own id given", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":"` + subjA + `"}`)}, "", "", subjA, subjA},
	{"own id with lower-case x", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":"11010519491231002x"}`)}, "", "", subjA, subjA},
	{"own id null", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":null}`)}, "", "", subjA, subjA},
	{"someone else's id", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":"` + subjB + `"}`)}, ReasonForbiddenSubject, "id_number", "", ""},
	{"write for someone else", Request{Client: "portal", Subject: subjA, Operation: "contact.update", Params: json.RawMessage(`{"mobile":"13812345678","id_number":"` + subjB + `"}`)}, ReasonForbiddenSubject, "id_number", "", ""},
	{"client may not assert", Request{Client: "kiosk", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonSubjectNotTrusted, "", "", ""},
	{"unknown client", Request{Client: "evil", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonSubjectNotTrusted, "", "", ""},
	{"no client", Request{Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonSubjectNotTrusted, "", "", ""},
	{"unknown operation first", Request{Client: "evil", Subject: "x", Operation: "nope"}, ReasonUnknownOperation, "", "", ""},
	{"subject not an ID", Request{Client: "portal", Subject: "abc", Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonBadSubject, "", "", ""},
	{"subject check digit", Request{Client: "portal", Subject: subjA[:17] + "1", Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonBadSubject, "", "", ""},
	{"subject born in the future", Request{Client: "portal", Subject: "110105209912310014", Operation: "ping"}, ReasonBadSubject, "", "", ""},
	{"subject 1 MB", Request{Client: "portal", Subject: strings.Repeat("1", 1<<20), Operation: "ping"}, ReasonBadSubject, "", "", ""},
	{"subject checked before params", Request{Client: "portal", Subject: "abc", Operation: "violations.query", Params: json.RawMessage(`[`)}, ReasonBadSubject, "", "", ""},
	{"params checked before binding", Request{Client: "portal", Subject: subjA, Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":"` + subjA[:17] + `1"}`)}, ReasonBadIDNumber, "id_number", "", ""},
	{"missing subject", Request{Client: "kiosk", Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345"}`)}, ReasonMissingSubject, "id_number", "", ""},
	{"missing subject, id given", Request{Client: "portal", Operation: "violations.query", Params: json.RawMessage(`{"plate":"京A12345","id_number":"` + subjA + `"}`)}, ReasonMissingSubject, "id_number", "", ""},
	{"missing param before missing subject", Request{Client: "portal", Operation: "violations.query", Params: json.RawMessage(`{}`)}, ReasonMissingParam, "plate", "", ""},
	{"per-subject limit needs a subject", Request{Client: "kiosk", Operation: "exam.book", Params: json.RawMessage(`{"id_number":"` + subjB + `","slot":1}`)}, ReasonMissingSubject, "", "", ""},
	{"unbound id may differ", Request{Client: "portal", Subject: subjA, Operation: "exam.book", Params: json.RawMessage(`{"id_number":"` + subjB + `","slot":1}`)}, "", "", subjA, subjB},
	{"subject on an operation without binding", Request{Client: "portal", Subject: subjA, Operation: "ping"}, "", "", subjA, ""},
	{"no subject, no binding", Request{Client: "kiosk", Operation: "ping"}, "", "", "", ""},
}

func TestPolicy_Evaluate_subject(t *testing.T) {
	p := loadFile(t, "full.yaml")
	if idn(subjB[:17]) != subjB {
		t.Fatal("subjB has a wrong check digit")
	}
	for _, tc := range subjectCases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.Now = testNow
			c, err := p.Evaluate(r)
			if tc.reason != "" {
				rej := checkReject(t, err, tc.reason, tc.param)
				for _, secret := range []string{subjA, subjB, strings.ToLower(subjA)} {
					if strings.Contains(rej.Message, secret) {
						t.Fatalf("message %q repeats an ID number", rej.Message)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Subject != tc.subject {
				t.Fatalf("Subject %q, want %q", c.Subject, tc.subject)
			}
			if got := argValue(c, "id_number"); tc.idArg != "" && got != tc.idArg {
				t.Fatalf("id_number bound to %v, want %s", got, tc.idArg)
			}
		})
	}
}

// argValue returns the value bound to the named placeholder, or nil.
func argValue(c *Checked, name string) any {
	for _, a := range c.Args {
		if na := a.(sql.NamedArg); na.Name == name {
			return na.Value
		}
	}
	return nil
}

func TestLoad_full(t *testing.T) {
	p := loadFile(t, "full.yaml")
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	if want := []Client{{"portal", true}, {"kiosk", false}}; !slices.Equal(p.Clients, want) {
		t.Errorf("clients %+v", p.Clients)
	}
	if c, ok := p.Client("portal"); !ok || !c.AssertsSubject {
		t.Errorf("Client(portal) = %+v %v", c, ok)
	}
	if _, ok := p.Client("nobody"); ok {
		t.Error("Client found an unlisted name")
	}
	q, _ := p.Operation("violations.query")
	if q.Subject != "id_number" || q.MaxRows != 50 || q.Approval != nil {
		t.Errorf("violations.query = %+v", q)
	}
	if !slices.Equal(q.Reads["violations"], []string{"id", "occurred_at", "plate"}) || len(q.Reads) != 2 {
		t.Errorf("reads %v", q.Reads)
	}
	if q.Mask["owner_id"] != MaskIDNumber || q.Mask["owner_name"] != MaskName || len(q.Mask) != 3 {
		t.Errorf("mask %v", q.Mask)
	}
	if q.Limits != (Limits{Rate{10, time.Minute}, Rate{600, time.Minute}}) {
		t.Errorf("limits %+v", q.Limits)
	}
	if want := []string{"plate", "id_number", "plate_type", "period_from", "period_to"}; !slices.Equal(q.Placeholders, want) {
		t.Errorf("placeholders %v, want %v", q.Placeholders, want)
	}
	period, _ := q.Param("period")
	if period.DateMin != "today-3650d" || period.DateMax != "today" || period.MaxDays != 366 || string(period.Example) != `{"from":"2024-01-01","to":"2024-12-31"}` {
		t.Errorf("period = %+v", period)
	}
	u, _ := p.Operation("contact.update")
	if u.Approval == nil || u.Approval.Within != 72*time.Hour || !slices.Equal(u.Updates["drivers"], []string{"mobile", "since"}) || u.Limits.PerSubject != (Rate{3, 24 * time.Hour}) {
		t.Errorf("contact.update = %+v", u)
	}
	b, _ := p.Operation("exam.book")
	if b.Approval == nil || b.Approval.Within != DefaultApprovalWithin || !slices.Equal(b.Inserts, []string{"appointments"}) {
		t.Errorf("exam.book = %+v", b)
	}
	if ping, _ := p.Operation("ping"); ping.Reads == nil || len(ping.Reads) != 0 {
		t.Errorf("ping reads %#v, want declared and empty", ping.Reads)
	}
	// The default timezone.
	d, err := Parse("d.yaml", []byte("version: 1\noperations: []\n"))
	if err != nil || d.Timezone != DefaultTimezone || d.Location().String() != DefaultTimezone {
		t.Errorf("default timezone: %v %v", d, err)
	}
}

func TestPolicy_Warnings(t *testing.T) {
	if p, err := Parse("sample/policy.yaml", sample.Policy()); err != nil || len(p.Warnings()) != 0 {
		t.Fatalf("the sample policy: %v, warnings %q, want none", err, p.Warnings())
	}
	// A policy of the v0 language declares no table access.
	p, err := Parse("v0.yaml", []byte(`version: 1
operations:
  - name: slots.list
    mode: read
    statement: SELECT id FROM exam_slots
  - name: slot.book
    mode: write
    params:
      slot: {type: int}
    statement: INSERT INTO appointments (slot_id) SELECT id FROM exam_slots WHERE id = :slot
`))
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings()
	want := []string{
		"v0.yaml:3: operations[0].reads: ",
		"v0.yaml:6: operations[1].inserts: ",
		"v0.yaml:6: operations[1].reads: ",
	}
	if len(w) != len(want) {
		t.Fatalf("warnings:\n%s", strings.Join(w, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(w[i], want[i]) {
			t.Errorf("warning %q, want prefix %q", w[i], want[i])
		}
	}
	w[0] = "changed"
	if p.Warnings()[0] == "changed" {
		t.Error("Warnings returns the policy's own slice")
	}
	if (*Policy)(nil).Warnings() != nil {
		t.Error("nil policy has warnings")
	}
}

func TestMaskValue(t *testing.T) {
	for _, tc := range []struct{ kind, in, want string }{
		{MaskName, "王小明", "王*"},
		{MaskName, "欧阳娜娜", "欧*"},
		{MaskName, "Li", "L*"},
		{MaskName, "王", "*"},
		{MaskName, "", ""},
		{MaskIDNumber, "11010519491231002X", "110105********002X"},
		{MaskIDNumber, "12345678901", "123456*8901"},
		{MaskIDNumber, "1234567890", "**********"},
		{MaskMobile, "13812345678", "138****5678"},
		{MaskMobile, "+8613812345678", "+86*******5678"},
		{MaskMobile, "1234567", "*******"},
		{MaskFull, "anything at all", "****"},
		{MaskFull, "x", "****"},
		{"unknown", "secret", "****"},
		{MaskIDNumber, "", ""},
	} {
		if got := MaskValue(tc.kind, tc.in); got != tc.want {
			t.Errorf("MaskValue(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestOperation_MaskRow(t *testing.T) {
	p := loadFile(t, "full.yaml")
	q, _ := p.Operation("violations.query")
	row := map[string]any{
		"id":           int64(7),
		"owner_name":   "王小明",
		"owner_id":     []byte(subjA),
		"owner_mobile": int64(13812345678),
		"occurred_at":  "2024-01-02",
	}
	q.MaskRow(row)
	want := map[string]any{
		"id":           int64(7),
		"owner_name":   "王*",
		"owner_id":     "110105********002X",
		"owner_mobile": "138****5678",
		"occurred_at":  "2024-01-02",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %#v, want %#v", k, row[k], v)
		}
	}
	if len(row) != len(want) {
		t.Errorf("row %v", row)
	}
	// NULL stays NULL, absent columns stay absent.
	row = map[string]any{"owner_name": nil}
	q.MaskRow(row)
	if v, ok := row["owner_name"]; !ok || v != nil || len(row) != 1 {
		t.Errorf("row %v", row)
	}
	// No mask, no change; a nil operation is a no-op.
	ping, _ := p.Operation("ping")
	row = map[string]any{"owner_name": "王小明"}
	ping.MaskRow(row)
	(*Operation)(nil).MaskRow(row)
	if row["owner_name"] != "王小明" {
		t.Errorf("row %v", row)
	}
}

func TestCatalogue_roundTrip(t *testing.T) {
	for _, name := range []string{"full.yaml", "types.yaml", "ok.yaml", "sample"} {
		t.Run(name, func(t *testing.T) {
			var p *Policy
			if name == "sample" {
				var err error
				if p, err = Parse("policy.yaml", sample.Policy()); err != nil {
					t.Fatal(err)
				}
			} else {
				p = loadFile(t, name)
			}
			data, err := json.Marshal(p.Catalogue())
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"SELECT", "violations v", "owner_mobile", "appointments"} {
				if strings.Contains(string(data), secret) {
					t.Errorf("catalogue holds %q", secret)
				}
			}
			q, err := ParseCatalogue(data)
			if err != nil {
				t.Fatalf("ParseCatalogue: %v\n%s", err, data)
			}
			again, _ := json.Marshal(q.Catalogue())
			if string(again) != string(data) {
				t.Fatalf("catalogue changed:\n%s\n%s", data, again)
			}
			for _, op := range q.Operations {
				if op.Statement != "" || op.Reads != nil || op.Mask != nil {
					t.Errorf("%s carries %q %v %v", op.Name, op.Statement, op.Reads, op.Mask)
				}
			}
			for _, r := range catalogueRequests(t, p) {
				c1, err1 := p.Evaluate(r)
				c2, err2 := q.Evaluate(r)
				if !sameDecision(c1, err1, c2, err2) {
					t.Errorf("%s %s: policy %v %v, catalogue %v %v", r.Operation, r.Params, c1, err1, c2, err2)
				}
			}
		})
	}
}

// catalogueRequests is a table of requests to decide both ways: the
// subject cases, the operations' examples, each with one value changed,
// and the type cases' values.
func catalogueRequests(t *testing.T, p *Policy) []Request {
	var rs []Request
	for _, tc := range subjectCases {
		r := tc.r
		r.Now = testNow
		rs = append(rs, r)
	}
	values := []string{`"京A12345"`, `"` + subjA + `"`, `"02"`, `"13812345678"`, `"2025-06-15"`, `{"from":"2025-06-01","to":"2025-06-15"}`,
		`{"from":"2015-06-01","to":"2015-06-15"}`, `{"from":"2024-01-01","to":"2025-06-15"}`, `"2024-03-01"`, `1`, `-9`, `"red"`, `"ab"`, `null`, `"\u0000"`, `[]`}
	for _, op := range p.Operations {
		ex := map[string]json.RawMessage{}
		for _, pa := range op.Params {
			if pa.Example != nil {
				ex[pa.Name] = pa.Example
			}
		}
		b, _ := json.Marshal(ex)
		rs = append(rs, Request{Client: "portal", Subject: subjA, Operation: op.Name, Params: b, Now: testNow})
		rs = append(rs, Request{Operation: op.Name, Params: b, Now: testNow})
		for _, pa := range op.Params {
			for _, v := range values {
				m := map[string]json.RawMessage{}
				for k, e := range ex {
					m[k] = e
				}
				m[pa.Name] = json.RawMessage(v)
				b, _ := json.Marshal(m)
				rs = append(rs, Request{Client: "portal", Subject: subjA, Operation: op.Name, Params: b, Now: testNow})
			}
		}
	}
	if len(rs) < 50 {
		t.Fatalf("only %d requests", len(rs))
	}
	return rs
}

// sameDecision compares two evaluations: the same refusal, or the same
// subject and the same named arguments (in any order, as a catalogue
// binds in declaration order).
func sameDecision(c1 *Checked, err1 error, c2 *Checked, err2 error) bool {
	if (err1 == nil) != (err2 == nil) {
		return false
	}
	if err1 != nil {
		var r1, r2 *RejectError
		return errors.As(err1, &r1) && errors.As(err2, &r2) && r1.Reason == r2.Reason && r1.Param == r2.Param && r1.Message == r2.Message
	}
	if c1.Subject != c2.Subject || len(c1.Args) != len(c2.Args) {
		return false
	}
	for _, a := range c1.Args {
		na := a.(sql.NamedArg)
		if argValue(c2, na.Name) != na.Value {
			return false
		}
	}
	return true
}

func TestParseCatalogue_errors(t *testing.T) {
	p := loadFile(t, "full.yaml")
	good, _ := json.Marshal(p.Catalogue())
	for _, tc := range []struct{ name, data, want string }{
		{"not JSON", `{`, "parse catalogue"},
		{"unknown field", strings.Replace(string(good), `"timezone"`, `"statement":"x","timezone"`, 1), "unknown field"},
		{"trailing data", string(good) + `{}`, "data after"},
		{"version", strings.Replace(string(good), `"version":1`, `"version":2`, 1), "catalogue: version: must be 1"},
		{"timezone", strings.Replace(string(good), `"Asia/Shanghai"`, `"Nowhere/Else"`, 1), "catalogue: timezone:"},
		{"bad type", strings.Replace(string(good), `"type":"plate"`, `"type":"plates"`, 1), "catalogue: operations[0].params.plate.type: unknown type"},
		{"bad pattern", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","params":[{"name":"x","type":"string","required":true,"max_len":3,"pattern":"[a-"}]}]}`, "catalogue: operations[0].params.x.pattern: not a valid RE2"},
		{"float bound", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","params":[{"name":"x","type":"int","required":true,"min":1.5}]}]}`, "operations[0].params.x.min: want a decimal integer"},
		{"duplicate param", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","params":[{"name":"x","type":"int"},{"name":"x","type":"int"}]}]}`, "duplicate parameter"},
		{"subject not id", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","subject":"x","params":[{"name":"x","type":"int"}]}]}`, "operations[0].subject:"},
		{"bad rate", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","params":[],"limits":{"per_client":"0/1m"}}]}`, "operations[0].limits.per_client:"},
		{"approval on read", `{"version":1,"timezone":"UTC","clients":[],"operations":[{"name":"a","mode":"read","params":[],"approval":{"within":"1h"}}]}`, "operations[0].approval: only write"},
		{"bad client", `{"version":1,"timezone":"UTC","clients":[{"name":"A"}],"operations":[]}`, "catalogue: clients[0].name:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCatalogue([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzEvaluate feeds arbitrary requests to Evaluate on testdata/full.yaml
// and on its catalogue. It must never panic, must refuse only with a
// listed reason and a message that names its parameter, must bind a
// subject-bound parameter only to the subject, and the catalogue must
// decide as the policy does.
func FuzzEvaluate(f *testing.F) {
	p := loadFile(f, "full.yaml")
	data, _ := json.Marshal(p.Catalogue())
	q, err := ParseCatalogue(data)
	if err != nil {
		f.Fatal(err)
	}
	for _, tc := range subjectCases {
		f.Add(tc.r.Client, tc.r.Subject, tc.r.Operation, []byte(tc.r.Params))
	}
	f.Fuzz(func(t *testing.T, client, subject, op string, params []byte) {
		r := Request{Client: client, Subject: subject, Operation: op, Params: params, Now: testNow}
		c, err := p.Evaluate(r)
		c2, err2 := q.Evaluate(r)
		if !sameDecision(c, err, c2, err2) {
			t.Fatalf("policy %v %v, catalogue %v %v", c, err, c2, err2)
		}
		if err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("non-reject error %T: %v", err, err)
			}
			if !slices.Contains(Reasons, rej.Reason) || rej.Message == "" || len(rej.Message) > 512 {
				t.Fatalf("reason %q message %q", rej.Reason, rej.Message)
			}
			if rej.Param != "" && !strings.Contains(rej.Message, rej.Param) {
				t.Fatalf("message %q does not name %q", rej.Message, rej.Param)
			}
			if len(subject) >= 8 && strings.Contains(rej.Message, subject) {
				t.Fatalf("message %q repeats the subject", rej.Message)
			}
			return
		}
		if c.Op.Name != op || len(c.Args) != len(c.Op.Placeholders) {
			t.Fatalf("allowed with %+v", c)
		}
		if c.Op.Subject != "" && (c.Subject == "" || argValue(c, c.Op.Subject) != c.Subject) {
			t.Fatalf("subject %q, bound %v", c.Subject, argValue(c, c.Op.Subject))
		}
		for _, a := range c.Args {
			if s, ok := a.(sql.NamedArg).Value.(string); ok && badRune(s) >= 0 {
				t.Fatalf("allowed a control character")
			}
		}
	})
}

func TestFuzzEvaluate_corpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzEvaluate", "*"))
	if err != nil || len(files) < 3 {
		t.Fatalf("%d seed files: %v", len(files), err)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err != nil || !strings.HasPrefix(string(b), "go test fuzz v1\n") {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestPolicy_Evaluate_hugeValueNotCopied shows that an over-long value is
// refused from its length alone, without being decoded or copied.
func TestPolicy_Evaluate_hugeValueNotCopied(t *testing.T) {
	p := loadFile(t, "types.yaml")
	big := strJSON(strings.Repeat("京", 1<<20/3))
	for _, op := range []string{"t.plate", "t.string", "t.id_number", "t.date", "t.enum"} {
		r := Request{Operation: op, Params: json.RawMessage(`{"v":` + big + `}`), Now: testNow}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, err := p.Evaluate(r); err == nil {
				t.Fatalf("%s allowed 1 MB", op)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("%s: refusing 1 MB ten times allocated %d bytes", op, n)
		}
	}
}

// BenchmarkEvaluate measures a typical citizen request: a subject-bound
// id_number and a plate on violations.query.
func BenchmarkEvaluate(b *testing.B) {
	p := loadFile(b, "full.yaml")
	r := Request{Client: "portal", Subject: subjA, Operation: "violations.query",
		Params: json.RawMessage(`{"id_number":"` + subjA + `","plate":"粤BD12345"}`), Now: testNow}
	if _, err := p.Evaluate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Evaluate(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluate_refuse1MB measures refusing a 1 MB plate.
func BenchmarkEvaluate_refuse1MB(b *testing.B) {
	p := loadFile(b, "full.yaml")
	r := Request{Client: "portal", Subject: subjA, Operation: "violations.query",
		Params: json.RawMessage(`{"plate":"` + strings.Repeat("京", 1<<20/3) + `"}`), Now: testNow}
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Params)))
	for b.Loop() {
		if _, err := p.Evaluate(r); err == nil {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkEvaluate_sample evaluates the sample policy's violations.query
// as the portal sends it: a subject, an id_number bound to it and a plate.
func BenchmarkEvaluate_sample(b *testing.B) {
	p, err := Parse("policy.yaml", sample.Policy())
	if err != nil {
		b.Fatal(err)
	}
	r := Request{Client: "portal", Subject: "110101198001010010", Operation: "violations.query",
		Params: json.RawMessage(`{"id_number":"110101198001010010","plate":"粤BD12345"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Evaluate(r); err != nil {
			b.Fatal(err)
		}
	}
}
