package admin

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/config"
)

// ReadPolicyFile reads the policy file at path and its signature file
// path+SigSuffix. A missing signature file gives a nil sig and no error;
// a signature file over MaxSignatureSize is an error.
func ReadPolicyFile(path string) (policy, sig []byte, sigPath string, err error) {
	policy, err = config.ReadFile(path)
	if err != nil {
		return nil, nil, "", err
	}
	sigPath = path + SigSuffix
	f, err := os.Open(sigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return policy, nil, sigPath, nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	defer f.Close()
	sig, err = io.ReadAll(io.LimitReader(f, MaxSignatureSize+1))
	if err != nil {
		return nil, nil, "", fmt.Errorf("read %s: %w", sigPath, err)
	}
	if len(sig) > MaxSignatureSize {
		return nil, nil, "", fmt.Errorf("%s: larger than %d bytes", sigPath, MaxSignatureSize)
	}
	return policy, sig, sigPath, nil
}

// SignPolicyFile adds the signatures of signers to the signature file of
// the policy at path, creating it if needed, and replaces it atomically
// (mode 0644). It returns the new signature file's contents.
func SignPolicyFile(path string, signers ...note.Signer) ([]byte, error) {
	policy, sig, sigPath, err := ReadPolicyFile(path)
	if err != nil {
		return nil, err
	}
	for _, s := range signers {
		if sig, err = SignPolicy(policy, sig, s); err != nil {
			return nil, fmt.Errorf("%s: %w", sigPath, err)
		}
	}
	if err := WriteFile(sigPath, sig, 0o644, true); err != nil {
		return nil, err
	}
	return sig, nil
}
