package intranet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
)

// activePolicy is a policy that passed every check and is in force, with
// what the agent needs to know about who made it so.
type activePolicy struct {
	pol     *policy.Policy
	ring    *admin.Keyring // the admins' keys it was checked with; approvals too
	signers []string       // distinct admins whose signatures made it take effect
	sha256  string         // hex SHA-256 of the policy file's bytes
	// catalogue is the JSON of the policy's operation catalogue, which the
	// seal stage sends to the DMZ.
	catalogue []byte
}

// loadPolicy reads the admins' public keys from ring (a directory), then
// the policy file and its detached signature file
// (FILE.sig), checks that at least required distinct admins of the
// keyring signed these exact bytes, and only then parses and validates the
// policy. Nothing of an under-signed file is parsed: an unsigned policy is
// the input of whoever could write the file, and the parser is the
// agent's largest attack surface after the envelope reader.
//
// Then every statement is proven against the replica (db): compiled under
// the SQLite authorizer its declared access allows, read statements
// read-only. A policy whose statement could write where it must not, or
// read an undeclared table or column, does not take effect; nor does one
// whose catalogue is too large for a result envelope.
func loadPolicy(ctx context.Context, path, admins string, required int, db *replica.DB) (*activePolicy, error) {
	ring, err := admin.LoadKeyring(admins)
	if err != nil {
		return nil, fmt.Errorf("load admin keys: %w", err)
	}
	data, sig, sigPath, err := admin.ReadPolicyFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if sig == nil {
		return nil, fmt.Errorf("load policy %s: no signature file %s: sign the policy with `ferryctl policy sign` (%d admins needed)", path, sigPath, required)
	}
	signers, err := admin.VerifyPolicy(data, sig, ring, required)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: signature %s: %w", path, sigPath, err)
	}
	pol, err := policy.Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if err := db.ProvePolicy(ctx, pol); err != nil {
		return nil, fmt.Errorf("load policy %s: statements not proven against the replica (check with `ferryctl policy lint --replica`): %w", path, err)
	}
	cat, err := json.Marshal(pol.Catalogue())
	if err != nil {
		return nil, fmt.Errorf("load policy %s: catalogue: %w", path, err)
	}
	if len(cat) > batch.MaxCatalogue {
		return nil, fmt.Errorf("load policy %s: catalogue of %d bytes, more than the %d a result envelope may carry", path, len(cat), batch.MaxCatalogue)
	}
	sum := sha256.Sum256(data)
	return &activePolicy{pol: pol, ring: ring, signers: signers, sha256: hex.EncodeToString(sum[:]), catalogue: cat}, nil
}
