package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestPolicyTest_sample runs the sample policy's own cases against the
// sample replica: every case passes, and the replica is not changed.
func TestPolicyTest_sample(t *testing.T) {
	dir := sampleDir(t)
	db := filepath.Join(dir, "replica.db")
	before := readBytes(t, db)
	out, _ := mustFerryctl(t, 0, "policy", "test", filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "policy_cases.yaml"), "--replica", db)
	if strings.Contains(out, "FAIL") {
		t.Errorf("a case failed:\n%s", out)
	}
	for _, re := range []string{
		`(?m)^ok   violations of my own vehicle$`,
		`(?m)^ok   my licence, masked$`,
		`(?m)^ok   book the same slot again writes nothing$`,
		`(?m)^ok   licence status an eleventh time in a minute$`,
		`(?m)^.*/policy_cases\.yaml: \d+ cases, \d+ passed, 0 failed `,
	} {
		matches(t, "stdout", out, re)
	}
	if !bytes.Equal(before, readBytes(t, db)) {
		t.Error("policy test changed the replica it was given")
	}
	// The booking went to a copy: running again gives the same answers.
	mustFerryctl(t, 0, "policy", "test", filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "policy_cases.yaml"), "--replica", db)
}

func TestPolicyTest_mismatch(t *testing.T) {
	dir := sampleDir(t)
	cases := filepath.Join(dir, "wrong.yaml")
	writeFile(t, cases, []byte(`cases:
  - name: wrong row count
    client: portal
    subject: '320102197905145138'
    operation: licence.status
    expect: allow
    rows: 2
  - name: unmasked mobile
    client: portal
    subject: '320102197905145138'
    operation: licence.status
    expect: allow
    match: {mobile: '[0-9]{11}'}
  - name: someone else allowed
    client: portal
    subject: '320102197905145138'
    operation: licence.status
    params: {id_number: '330106199101300696'}
    expect: allow
  - name: wrong reason
    client: kiosk
    operation: exam.slots
    params: {subject: 9}
    expect: deny
    reason: bad_type
  - name: allowed but denied wanted
    client: kiosk
    operation: exam.slots
    params: {subject: 1}
    expect: deny
  - name: booked rows
    client: portal
    subject: '330106199101300696'
    operation: exam.book
    params: {slot_id: 1}
    expect: allow
    rows_affected: 2
  - name: repeated key
    client: kiosk
    operation: exam.slots
    params_json: '{"subject": 1, "subject": 2}'
    expect: deny
    reason: bad_params
`), 0o644)
	out, errOut := mustFerryctl(t, 1, "policy", "test", filepath.Join(dir, "policy.yaml"), cases, "--replica", filepath.Join(dir, "replica.db"))
	for _, re := range []string{
		`(?m)^FAIL wrong row count: got done with 1 row, want 2 rows$`,
		`(?m)^FAIL unmasked mobile: row 1: column mobile does not match \^\(\?:\[0-9\]\{11\}\)\$$`,
		`(?m)^FAIL someone else allowed: got rejected forbidden_subject, want allow$`,
		`(?m)^FAIL wrong reason: got rejected out_of_range, want deny bad_type$`,
		`(?m)^FAIL allowed but denied wanted: got done, want deny$`,
		`(?m)^FAIL booked rows: got done with 1 rows affected, want 2$`,
		`(?m)^ok   repeated key$`,
		`(?m)^.*/wrong\.yaml: 7 cases, 1 passed, 6 failed `,
	} {
		matches(t, "stdout", out, re)
	}
	matches(t, "stderr", errOut, `wrong\.yaml: 6 of 7 cases: policy test failed`)
	if strings.Contains(out, "13069533659") || strings.Contains(out, "李宇超") {
		t.Errorf("a failure shows personal data from the rows:\n%s", out)
	}
}

func TestPolicyTest_badCases(t *testing.T) {
	dir := sampleDir(t)
	pol, db := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "replica.db")
	cases := filepath.Join(dir, "bad.yaml")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "cases:\n  - name: a\n    operation: x\n    expect: allow\n    colour: red\n",
			[]string{`bad\.yaml:5: cases\[0\]\.colour: unknown key "colour"`}},
		{"no cases", "cases: []\n", []string{`bad\.yaml:1: cases: must list at least one case`}},
		{"all problems", `cases:
  - name: a
    operation: x
    expect: maybe
  - name: a
    expect: allow
    reason: bad_plate
    repeat: 0
    params: {a: .inf}
  - name: b
    operation: x
    expect: deny
    reason: nope
    rows: 3
  - name: c
    operation: x
    expect: allow
    params: [1]
    params_json: '{}'
  - name: d
    operation: x
    expect: allow
    match: {x: '('}
`, []string{
			`bad\.yaml:4: cases\[0\]\.expect: must be allow, deny or held, not "maybe"`,
			`bad\.yaml:5: cases\[1\]\.name: duplicate case name "a"`,
			`bad\.yaml:\d+: cases\[1\]\.operation: required`,
			`bad\.yaml:7: cases\[1\]\.reason: only a deny case has a reason`,
			`bad\.yaml:8: cases\[1\]\.repeat: must be between 1 and 10000`,
			`bad\.yaml:9: cases\[1\]\.params: number \.inf cannot be written in JSON`,
			`bad\.yaml:13: cases\[2\]\.reason: unknown reason code "nope"`,
			`bad\.yaml:14: cases\[2\]\.rows: only an allow case has rows`,
			`bad\.yaml:19: cases\[3\]\.params_json: params and params_json are mutually exclusive`,
			`bad\.yaml:23: cases\[4\]\.match\.x: pattern does not compile`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, cases, []byte(tc.yaml), 0o644)
			_, errOut := mustFerryctl(t, 1, "policy", "test", pol, cases, "--replica", db)
			for _, re := range tc.want {
				matches(t, "stderr", errOut, `(?m)^(ferryctl: error: )?.*/`+re)
			}
		})
	}

	_, errOut := mustFerryctl(t, 2, "policy", "test", pol, cases)
	matches(t, "stderr", errOut, `--replica is required`)
	_, errOut = mustFerryctl(t, 1, "policy", "test", pol, filepath.Join(dir, "policy_cases.yaml"), "--replica", filepath.Join(dir, "missing.db"))
	matches(t, "stderr", errOut, `missing\.db: no such file`)
}

func TestYamlJSON(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{`{a: 1}`, `{"a":1}`},
		{`{a: -9223372036854775808}`, `{"a":-9223372036854775808}`},
		{`{a: 18446744073709551616}`, `{"a":18446744073709551616}`},
		{`{a: 1.0, b: 1e2}`, `{"a":1.0,"b":1e2}`},
		{`{id: '110101198001010010', n: 110101198001010010}`, `{"id":"110101198001010010","n":110101198001010010}`},
		{`{plate: 京A12345, ok: true, none: null, tilde: ~}`, `{"plate":"京A12345","ok":true,"none":null,"tilde":null}`},
		{`{r: {from: '2024-01-01', to: '2024-01-31'}, l: [1, "x"]}`, `{"r":{"from":"2024-01-01","to":"2024-01-31"},"l":[1,"x"]}`},
		{`{z: 1, a: 2}`, `{"z":1,"a":2}`},
		{"{s: \"a\\u0000b\"}", `{"s":"a\u0000b"}`},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tc.yaml), &n); err != nil {
			t.Fatal(err)
		}
		got, err := yamlJSON(n.Content[0], 0)
		if err != nil {
			t.Errorf("%s: %s", tc.yaml, err.msg)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.yaml, got, tc.want)
		}
	}
	for _, bad := range []string{`{a: .nan}`, `{a: !!binary aGk=}`, `{a: 1, a: 2}`, "{a: &x 1, b: *x}", `{[1]: 2}`} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(bad), &n); err != nil {
			continue // yaml itself refuses it
		}
		if got, err := yamlJSON(n.Content[0], 0); err == nil {
			t.Errorf("%s: got %s, want an error", bad, got)
		}
	}
}
