package admin

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestNoteOpen_behaviour pins down what note.Open does with repeated and
// unknown signatures, which VerifyPolicy depends on or works around.
func TestNoteOpen_behaviour(t *testing.T) {
	k := testKeyring(t, "alice", "bob")
	alice := signText(t, "text\n", "alice")
	aliceLine := sigLinesOf(t, alice)[0]
	mallory := sigLinesOf(t, signText(t, "text\n", "mallory"))[0]

	t.Run("same key twice is one signature", func(t *testing.T) {
		n, err := note.Open(withLines(t, alice, aliceLine, aliceLine), k)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Sigs) != 1 {
			t.Fatalf("got %d verified signatures, want 1", len(n.Sigs))
		}
	})
	t.Run("a bad repeat by a known key is skipped unverified", func(t *testing.T) {
		// This is why openNote verifies every line itself.
		n, err := note.Open(withLines(t, alice, aliceLine, flipSig(aliceLine)), k)
		if err != nil {
			t.Fatalf("note.Open now rejects a bad repeated signature (%v): openNote's own check may be redundant", err)
		}
		if len(n.Sigs) != 1 {
			t.Fatalf("got %d verified signatures, want 1", len(n.Sigs))
		}
		if _, _, err := openNote(withLines(t, alice, aliceLine, flipSig(aliceLine)), MaxSignatureSize, k); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("openNote: got %v, want ErrBadSignature", err)
		}
	})
	t.Run("unknown keys are kept unverified", func(t *testing.T) {
		n, err := note.Open(withLines(t, alice, aliceLine, mallory), k)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 1 || n.UnverifiedSigs[0].Name != "mallory" {
			t.Fatalf("got sigs %v unverified %v", n.Sigs, n.UnverifiedSigs)
		}
	})
	t.Run("only unknown keys is an UnverifiedNoteError", func(t *testing.T) {
		_, err := note.Open(withLines(t, alice, mallory), k)
		var ue *note.UnverifiedNoteError
		if !errors.As(err, &ue) {
			t.Fatalf("got %v, want *note.UnverifiedNoteError", err)
		}
	})
}

func TestVerifyPolicy(t *testing.T) {
	k := testKeyring(t, "alice", "bob", "carol")
	policy := testPolicy
	other := []byte("version: 1\noperations: [] # other\n")
	aliceBob := signPolicy(t, policy, nil, "alice", "bob")
	lines := sigLinesOf(t, aliceBob)
	aliceLine, bobLine := lines[0], lines[1]
	// A second key named bob, not the one in the keyring.
	fakeBob, _, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)), "bob")
	if err != nil {
		t.Fatal(err)
	}
	fakeBobSigner, err := note.NewSigner(fakeBob)
	if err != nil {
		t.Fatal(err)
	}
	fakeBobSig, err := SignPolicy(policy, nil, fakeBobSigner)
	if err != nil {
		t.Fatal(err)
	}
	fakeBobLine := sigLinesOf(t, fakeBobSig)[0]
	malloryLine := sigLinesOf(t, signPolicy(t, policy, nil, "mallory"))[0]
	modified := bytes.Clone(policy)
	modified[3] ^= 0x20
	text := PolicyText(policy)
	hexSum := strings.Fields(strings.Split(text, "\n")[1])[1]
	upperText := strings.Replace(text, hexSum, strings.ToUpper(hexSum), 1)

	tests := []struct {
		name     string
		policy   []byte
		sig      []byte
		required int
		want     []string
		wantErr  error
		wantMsg  string
	}{
		{name: "two distinct keys pass", policy: policy, sig: aliceBob, required: 2, want: []string{"alice", "bob"}},
		{name: "three of two pass", policy: policy, sig: signPolicy(t, policy, aliceBob, "carol"), required: 2, want: []string{"alice", "bob", "carol"}},
		{name: "one signature refused at two", policy: policy, sig: signPolicy(t, policy, nil, "alice"), required: 2,
			want: []string{"alice"}, wantErr: ErrUnderSigned, wantMsg: "1 of 2 required"},
		{name: "one signature enough at one", policy: policy, sig: signPolicy(t, policy, nil, "alice"), required: 1, want: []string{"alice"}},
		{name: "same key twice counts once", policy: policy, sig: withLines(t, aliceBob, aliceLine, aliceLine), required: 2,
			want: []string{"alice"}, wantErr: ErrUnderSigned, wantMsg: "1 of 2 required"},
		{name: "unknown key does not count", policy: policy, sig: withLines(t, aliceBob, aliceLine, malloryLine), required: 2,
			want: []string{"alice"}, wantErr: ErrUnderSigned, wantMsg: "1 of 2 required"},
		{name: "only unknown keys", policy: policy, sig: withLines(t, aliceBob, malloryLine), required: 2,
			wantErr: ErrUnderSigned, wantMsg: "0 of 2 required"},
		{name: "known name with another key does not count", policy: policy, sig: withLines(t, aliceBob, aliceLine, fakeBobLine), required: 2,
			want: []string{"alice"}, wantErr: ErrUnderSigned},
		{name: "unknown keys beside enough known ones", policy: policy, sig: withLines(t, aliceBob, malloryLine, aliceLine, bobLine), required: 2,
			want: []string{"alice", "bob"}},
		{name: "modified policy byte", policy: modified, sig: aliceBob, required: 2, wantErr: ErrMismatch},
		{name: "appended policy byte", policy: append(bytes.Clone(policy), '\n'), sig: aliceBob, required: 2, wantErr: ErrMismatch},
		{name: "signature of another file", policy: policy, sig: signPolicy(t, other, nil, "alice", "bob"), required: 2, wantErr: ErrMismatch},
		{name: "empty signature file", policy: policy, sig: nil, required: 2, wantErr: ErrMalformed},
		{name: "truncated", policy: policy, sig: aliceBob[:len(aliceBob)-20], required: 2, wantErr: ErrMalformed},
		{name: "no signature lines", policy: policy, sig: []byte(PolicyText(policy) + "\n"), required: 2, wantErr: ErrMalformed},
		{name: "garbled base64", policy: policy, sig: withLines(t, aliceBob, aliceLine, "— bob !!!notbase64\n"), required: 2, wantErr: ErrMalformed},
		{name: "CRLF line endings", policy: policy, sig: bytes.ReplaceAll(aliceBob, []byte("\n"), []byte("\r\n")), required: 2, wantErr: ErrMalformed},
		{name: "bad signature by known key", policy: policy, sig: withLines(t, aliceBob, aliceLine, flipSig(bobLine)), required: 2, wantErr: ErrBadSignature},
		{name: "bad repeat of a good signature", policy: policy, sig: withLines(t, aliceBob, aliceLine, bobLine, flipSig(bobLine)), required: 2, wantErr: ErrBadSignature},
		{name: "text rewritten for other bytes", policy: other,
			sig: append([]byte(PolicyText(other)+"\n"), aliceBob[len(PolicyText(policy))+1:]...), required: 2, wantErr: ErrBadSignature},
		{name: "approval text is no policy signature", policy: policy,
			sig: signText(t, "ferry-approval/v1\nrequest "+testRequestID+"\ndecision approve\ntime 2026-03-01T12:00:00Z\n", "alice", "bob"), required: 2, wantErr: ErrMalformed},
		{name: "uppercase hex refused", policy: policy, sig: signText(t, upperText, "alice", "bob"), required: 2, wantErr: ErrMalformed},
		{name: "too large", policy: policy, sig: append(bytes.Repeat([]byte("x"), MaxSignatureSize), aliceBob...), required: 2, wantErr: ErrMalformed},
		{name: "required zero refused", policy: policy, sig: aliceBob, required: 0, wantMsg: "at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyPolicy(tt.policy, tt.sig, k, tt.required)
			if tt.wantErr == nil && tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("VerifyPolicy: %v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("VerifyPolicy succeeded with %v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("error %q does not say %q", err, tt.wantMsg)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("signers %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyText(t *testing.T) {
	got := PolicyText([]byte("abc"))
	want := "ferry-policy-signature/v1\n" +
		"sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n" +
		"size 3\n"
	if got != want {
		t.Fatalf("PolicyText = %q, want %q", got, want)
	}
	if sum, size, err := parsePolicyText(got); err != nil || size != 3 || len(sum) != 32 {
		t.Fatalf("parsePolicyText: %x %d %v", sum, size, err)
	}
	for _, bad := range []string{
		"ferry-policy-signature/v1\nsha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize 03\n",
		"ferry-policy-signature/v1\nsha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize +3\n",
		"ferry-policy-signature/v1\nsha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize -3\n",
		"ferry-policy-signature/v1\nsha256 ba7816bf\nsize 3\n",
		"ferry-policy-signature/v1\nsha256  ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize 3\n",
		"ferry-policy-signature/v1\nsha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize 3\nextra\n",
		"ferry-policy-signature/v2\nsha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nsize 3\n",
	} {
		if _, _, err := parsePolicyText(bad); err == nil {
			t.Errorf("parsePolicyText accepted %q", bad)
		}
	}
}

func TestSignPolicy(t *testing.T) {
	k := testKeyring(t, "alice", "bob")
	policy := testPolicy

	t.Run("first signature", func(t *testing.T) {
		sig := signPolicy(t, policy, nil, "alice")
		if !bytes.HasPrefix(sig, []byte(PolicyText(policy)+"\n— alice ")) {
			t.Fatalf("unexpected signature file:\n%s", sig)
		}
		if got, err := VerifyPolicy(policy, sig, k, 1); err != nil || !slices.Equal(got, []string{"alice"}) {
			t.Fatalf("VerifyPolicy: %v %v", got, err)
		}
	})
	t.Run("second signer appends", func(t *testing.T) {
		one := signPolicy(t, policy, nil, "alice")
		two := signPolicy(t, policy, one, "bob")
		if !bytes.HasPrefix(two, one) {
			t.Fatalf("alice's signature file is not kept as it was:\n%s\n---\n%s", one, two)
		}
		if got, err := VerifyPolicy(policy, two, k, 2); err != nil || !slices.Equal(got, []string{"alice", "bob"}) {
			t.Fatalf("VerifyPolicy: %v %v", got, err)
		}
	})
	t.Run("signing twice is a no-op", func(t *testing.T) {
		two := signPolicy(t, policy, nil, "alice", "bob")
		again := signPolicy(t, policy, two, "alice")
		if !bytes.Equal(again, two) {
			t.Fatalf("signing again changed the file:\n%s\n---\n%s", two, again)
		}
	})
	t.Run("unknown signatures are kept", func(t *testing.T) {
		sig := signPolicy(t, policy, nil, "mallory", "alice", "bob")
		sigs, err := PolicySigners(policy, sig, k)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range sigs {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, []string{"mallory", "alice", "bob"}) || sigs[0].Known || !sigs[1].Known {
			t.Fatalf("signatures %+v", sigs)
		}
	})
	t.Run("a bad line by the same key is replaced", func(t *testing.T) {
		two := signPolicy(t, policy, nil, "alice", "bob")
		lines := sigLinesOf(t, two)
		broken := withLines(t, two, flipSig(lines[0]), lines[1])
		fixed := signPolicy(t, policy, broken, "alice")
		if got, err := VerifyPolicy(policy, fixed, k, 2); err != nil || !slices.Equal(got, []string{"bob", "alice"}) {
			t.Fatalf("VerifyPolicy: %v %v\n%s", got, err, fixed)
		}
	})
	t.Run("refuses a signature of other bytes", func(t *testing.T) {
		old := signPolicy(t, []byte("old\n"), nil, "alice")
		_, err := SignPolicy(policy, old, testSigner(t, "bob"))
		if !errors.Is(err, ErrMismatch) {
			t.Fatalf("got %v, want ErrMismatch", err)
		}
	})
	t.Run("refuses a malformed file", func(t *testing.T) {
		_, err := SignPolicy(policy, []byte("garbage\n"), testSigner(t, "bob"))
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("got %v, want ErrMalformed", err)
		}
	})
	t.Run("refuses a key whose name is no admin name", func(t *testing.T) {
		skey, _, err := note.GenerateKey(nil, "Alice.Example")
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := SignPolicy(policy, nil, s); err == nil || !strings.Contains(err.Error(), "invalid admin name") {
			t.Fatalf("got %v, want an invalid admin name error", err)
		}
	})
}

func TestPolicySigners(t *testing.T) {
	k := testKeyring(t, "alice", "bob")
	sig := signPolicy(t, testPolicy, nil, "alice", "mallory")
	lines := sigLinesOf(t, sig)
	sig = withLines(t, sig, lines[0], lines[1], lines[0])
	got, err := PolicySigners(testPolicy, sig, k)
	if err != nil {
		t.Fatal(err)
	}
	alice, mallory := testSigner(t, "alice"), testSigner(t, "mallory")
	want := []PolicySignature{
		{Name: "alice", KeyHash: alice.KeyHash(), Known: true},
		{Name: "mallory", KeyHash: mallory.KeyHash()},
		{Name: "alice", KeyHash: alice.KeyHash(), Known: true, Duplicate: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("PolicySigners = %+v, want %+v", got, want)
	}
}
