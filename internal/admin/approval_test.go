package admin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyApproval(t *testing.T) {
	k := testKeyring(t, "alice", "bob")
	approve := Approval{RequestID: testRequestID, Decision: DecisionApprove, Time: testTime}
	good, err := SignApproval(approve, testSigner(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := approve.Text()
	if err != nil {
		t.Fatal(err)
	}
	bobLine := sigLinesOf(t, good)[0]

	tests := []struct {
		name     string
		data     []byte
		want     *Approval
		wantName string
		wantErr  error
	}{
		{name: "round trip", data: good, want: &approve, wantName: "bob"},
		{name: "deny round trip", data: mustSignApproval(t, Approval{RequestID: testRequestID, Decision: DecisionDeny, Time: testTime}, "alice"),
			want: &Approval{RequestID: testRequestID, Decision: DecisionDeny, Time: testTime}, wantName: "alice"},
		{name: "decision flipped", data: withText(t, good, strings.Replace(text, "approve", "deny", 1)), wantErr: ErrBadSignature},
		{name: "request id changed", data: withText(t, good, strings.Replace(text, "4b2e", "4b2f", 1)), wantErr: ErrBadSignature},
		{name: "unknown signer", data: mustSignApproval(t, approve, "mallory"), wantErr: ErrUnknownSigner},
		{name: "two signatures", data: signText(t, text, "alice", "bob"), wantErr: ErrMalformed},
		{name: "same signature twice", data: withLines(t, good, bobLine, bobLine), wantErr: ErrMalformed},
		{name: "known plus unknown", data: withLines(t, good, bobLine, sigLinesOf(t, mustSignApproval(t, approve, "mallory"))[0]), wantErr: ErrMalformed},
		{name: "garbled signature", data: withLines(t, good, flipSig(bobLine)), wantErr: ErrBadSignature},
		{name: "truncated", data: good[:len(good)-30], wantErr: ErrMalformed},
		{name: "empty", data: nil, wantErr: ErrMalformed},
		{name: "too large", data: append(bytes.Repeat([]byte("a"), MaxApprovalSize), good...), wantErr: ErrMalformed},
		{name: "policy signature is no approval", data: signPolicy(t, testPolicy, nil, "bob"), wantErr: ErrMalformed},
		{name: "time with offset", data: signText(t, strings.Replace(text, "12:00:00Z", "12:00:00+08:00", 1), "bob"), wantErr: ErrMalformed},
		{name: "fractional seconds", data: signText(t, strings.Replace(text, "12:00:00Z", "12:00:00.5Z", 1), "bob"), wantErr: ErrMalformed},
		{name: "unknown decision", data: signText(t, strings.Replace(text, "approve", "maybe", 1), "bob"), wantErr: ErrMalformed},
		{name: "uppercase id", data: signText(t, strings.Replace(text, "4b2e12fb", "4B2E12FB", 1), "bob"), wantErr: ErrMalformed},
		{name: "extra line", data: signText(t, text+"note hi\n", "bob"), wantErr: ErrMalformed},
		{name: "lines reordered", data: signText(t, "ferry-approval/v1\ndecision approve\nrequest "+testRequestID+"\ntime 2026-03-01T12:00:00Z\n", "bob"), wantErr: ErrMalformed},
		{name: "double space", data: signText(t, strings.Replace(text, "request ", "request  ", 1), "bob"), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, name, err := VerifyApproval(tt.data, k)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v (%+v), want %v", err, a, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *a != *tt.want || name != tt.wantName {
				t.Fatalf("got %+v by %s, want %+v by %s", a, name, tt.want, tt.wantName)
			}
		})
	}
}

func mustSignApproval(t *testing.T, a Approval, signer string) []byte {
	t.Helper()
	out, err := SignApproval(a, testSigner(t, signer))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withText returns a signed note with its text replaced and its signature
// lines kept.
func withText(t *testing.T, msg []byte, text string) []byte {
	t.Helper()
	i := bytes.LastIndex(msg, []byte("\n\n"))
	return append([]byte(text+"\n"), msg[i+2:]...)
}

func TestApproval_Text(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	a := Approval{RequestID: testRequestID, Decision: DecisionApprove, Time: time.Date(2026, 3, 1, 20, 0, 0, 999_000_000, cst)}
	got, err := a.Text()
	if err != nil {
		t.Fatal(err)
	}
	want := "ferry-approval/v1\nrequest 4b2e12fbaa95c14e1482f4203bfcd474\ndecision approve\ntime 2026-03-01T12:00:00Z\n"
	if got != want {
		t.Fatalf("Text = %q, want %q", got, want)
	}
	for _, bad := range []Approval{
		{RequestID: "", Decision: DecisionApprove, Time: testTime},
		{RequestID: "4B2E12FBAA95C14E1482F4203BFCD474", Decision: DecisionApprove, Time: testTime},
		{RequestID: testRequestID + "\ndecision deny", Decision: DecisionApprove, Time: testTime},
		{RequestID: testRequestID, Decision: "Approve", Time: testTime},
		{RequestID: testRequestID, Decision: DecisionApprove},
	} {
		if _, err := bad.Text(); err == nil {
			t.Errorf("Text accepted %+v", bad)
		}
		if _, err := SignApproval(bad, testSigner(t, "alice")); err == nil {
			t.Errorf("SignApproval accepted %+v", bad)
		}
	}
}

func TestCheckSeparation(t *testing.T) {
	tests := []struct {
		approver string
		signers  []string
		wantErr  error
		ok       bool
	}{
		{approver: "carol", signers: []string{"alice", "bob"}, ok: true},
		{approver: "alice", signers: []string{"alice", "bob"}, wantErr: ErrSameAdmin},
		{approver: "bob", signers: []string{"alice", "bob"}, wantErr: ErrSameAdmin},
		{approver: "carol", signers: nil, ok: true},
		{approver: "", signers: []string{"alice"}},
	}
	for _, tt := range tests {
		err := CheckSeparation(tt.approver, tt.signers)
		switch {
		case tt.ok && err != nil:
			t.Errorf("CheckSeparation(%q, %v) = %v, want nil", tt.approver, tt.signers, err)
		case !tt.ok && err == nil:
			t.Errorf("CheckSeparation(%q, %v) = nil, want an error", tt.approver, tt.signers)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("CheckSeparation(%q, %v) = %v, want %v", tt.approver, tt.signers, err, tt.wantErr)
		}
	}
}

// TestSeparation_endToEnd checks the two halves together: the signers that
// VerifyPolicy returns are exactly who CheckSeparation refuses.
func TestSeparation_endToEnd(t *testing.T) {
	k := testKeyring(t, "alice", "bob", "carol")
	signers, err := VerifyPolicy(testPolicy, signPolicy(t, testPolicy, nil, "alice", "bob"), k, 2)
	if err != nil {
		t.Fatal(err)
	}
	for name, wantErr := range map[string]bool{"alice": true, "bob": true, "carol": false} {
		_, approver, err := VerifyApproval(mustSignApproval(t, Approval{RequestID: testRequestID, Decision: DecisionApprove, Time: testTime}, name), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSeparation(approver, signers); errors.Is(err, ErrSameAdmin) != wantErr {
			t.Errorf("%s: CheckSeparation = %v", name, err)
		}
	}
}
