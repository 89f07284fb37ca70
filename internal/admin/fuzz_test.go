package admin

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// The fuzz keyring knows alice and bob; mallory is unknown.
var fuzzAdmins = []string{"alice", "bob"}

// FuzzVerifyPolicy checks that no policy and signature file make
// VerifyPolicy or PolicySigners panic, and that whatever VerifyPolicy
// accepts really is signed over exactly those bytes by two distinct known
// admins.
func FuzzVerifyPolicy(f *testing.F) {
	k := testKeyring(f, fuzzAdmins...)
	for _, s := range policySeeds(f) {
		f.Add(s.policy, s.sig)
	}
	f.Fuzz(func(t *testing.T, policy, sig []byte) {
		sigs, errSigners := PolicySigners(policy, sig, k)
		signers, err := VerifyPolicy(policy, sig, k, DefaultRequired)
		// VerifyPolicy fails exactly as PolicySigners does, or on count.
		if errSigners != nil && (err == nil || errors.Is(err, ErrUnderSigned)) ||
			errSigners == nil && err != nil && !errors.Is(err, ErrUnderSigned) {
			t.Fatalf("PolicySigners and VerifyPolicy disagree: %v / %v", errSigners, err)
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(sig, []byte(PolicyText(policy)+"\n")) {
			t.Fatalf("accepted a signature file whose text is not the policy's:\n%q", sig)
		}
		if len(signers) < DefaultRequired {
			t.Fatalf("accepted %d signers", len(signers))
		}
		seen := map[string]bool{}
		for _, s := range signers {
			if seen[s] || !slices.Contains(k.Names(), s) {
				t.Fatalf("signers %v: repeated or unknown", signers)
			}
			seen[s] = true
		}
		if len(sigs) < len(signers) {
			t.Fatalf("%d signature lines but %d signers", len(sigs), len(signers))
		}
	})
}

// FuzzVerifyApproval checks that no input makes VerifyApproval panic, and
// that what it accepts is exactly the signed text of the approval it
// returns, by a known admin.
func FuzzVerifyApproval(f *testing.F) {
	k := testKeyring(f, fuzzAdmins...)
	for _, s := range approvalSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, name, err := VerifyApproval(data, k)
		if err != nil {
			return
		}
		if !slices.Contains(k.Names(), name) {
			t.Fatalf("accepted a signer %q outside the keyring", name)
		}
		text, err := a.Text()
		if err != nil {
			t.Fatalf("accepted an approval that cannot be written back: %v", err)
		}
		if !bytes.HasPrefix(data, []byte(text+"\n")) {
			t.Fatalf("accepted %q as %+v", data, a)
		}
	})
}

type policySeed struct {
	name        string
	policy, sig []byte
}

type approvalSeed struct {
	name string
	data []byte
}

func policySeeds(t testing.TB) []policySeed {
	policy := testPolicy
	good := signPolicy(t, policy, nil, "alice", "bob")
	lines := sigLinesOf(t, good)
	mallory := sigLinesOf(t, signPolicy(t, policy, nil, "mallory"))[0]
	return []policySeed{
		{"good_two_admins", policy, good},
		{"one_admin", policy, signPolicy(t, policy, nil, "alice")},
		{"same_key_twice", policy, withLines(t, good, lines[0], lines[0])},
		{"unknown_key", policy, withLines(t, good, lines[0], mallory)},
		{"bad_signature", policy, withLines(t, good, lines[0], flipSig(lines[1]))},
		{"modified_policy", append(bytes.Clone(policy), ' '), good},
		{"truncated", policy, good[:len(good)/2]},
		{"empty_policy", nil, signPolicy(t, nil, nil, "alice", "bob")},
	}
}

func approvalSeeds(t testing.TB) []approvalSeed {
	a := Approval{RequestID: testRequestID, Decision: DecisionApprove, Time: testTime}
	good, err := SignApproval(a, testSigner(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	a.Decision = DecisionDeny
	deny, err := SignApproval(a, testSigner(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := SignApproval(a, testSigner(t, "mallory"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := a.Text()
	return []approvalSeed{
		{"approve", good},
		{"deny", deny},
		{"unknown_signer", unknown},
		{"two_signatures", signText(t, text, "alice", "bob")},
		{"garbled", withLines(t, good, flipSig(sigLinesOf(t, good)[0]))},
		{"truncated", good[:len(good)-10]},
	}
}

// TestFuzzSeeds keeps testdata/fuzz in step with the seeds above (keys and
// signatures are deterministic): run with -update to rewrite it.
func TestFuzzSeeds(t *testing.T) {
	want := map[string]string{}
	for _, s := range policySeeds(t) {
		want[filepath.Join("FuzzVerifyPolicy", s.name)] = corpusFile(s.policy, s.sig)
	}
	for _, s := range approvalSeeds(t) {
		want[filepath.Join("FuzzVerifyApproval", s.name)] = corpusFile(s.data)
	}
	for name, data := range want {
		path := filepath.Join("testdata", "fuzz", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update)", err)
		}
		if string(got) != data {
			t.Errorf("%s is stale: run go test -run TestFuzzSeeds -update", path)
		}
	}
}

// corpusFile encodes values in the Go fuzzing corpus file format.
func corpusFile(values ...[]byte) string {
	s := "go test fuzz v1\n"
	for _, v := range values {
		s += fmt.Sprintf("[]byte(%s)\n", strconv.Quote(string(v)))
	}
	return s
}
