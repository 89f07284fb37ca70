package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/intranet"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/sample"
)

// heldDeployment makes a deployment with `ferryctl init` and holds one
// licence.renew request in its replica, as the intranet agent would. It
// returns the deployment's directory, the intranet config and the held
// request's id.
func heldDeployment(t *testing.T) (dir, cfgPath, id string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "dep")
	mustFerryctl(t, 0, "init", dir)
	cfgPath = filepath.Join(dir, "intranet", "intranet.yaml")
	cfg, err := intranet.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(cfg.Policy, sample.Policy())
	if err != nil {
		t.Fatal(err)
	}
	db, err := replica.Open(context.Background(), cfg.Replica)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id = envelope.NewID()
	req := batch.Request{ID: id, Client: "portal", Subject: sample.Citizens()[0].IDNumber, Operation: "licence.renew", Params: json.RawMessage(`{}`)}
	a, err := db.Apply(context.Background(), replica.Envelope{ID: envelope.NewID(), From: "dmz", Channel: "requests", Seq: 1, File: "x"}, []batch.Request{req}, pol)
	if err != nil {
		t.Fatal(err)
	}
	if a.Results[0].Status != batch.StatusHeld {
		t.Fatalf("licence.renew: %+v, want held", a.Results[0])
	}
	return dir, cfgPath, id
}

func TestApprove(t *testing.T) {
	dir, cfg, id := heldDeployment(t)
	key := func(name string) string { return filepath.Join(dir, "admins", name+admin.KeySuffix) }

	out, _ := mustFerryctl(t, 0, "approve", "list", "--config", cfg)
	matches(t, "stdout", out, `(?m)^REQUEST +OPERATION +CLIENT +HELD +EXPIRES +STATE +BY$`)
	matches(t, "stdout", out, `(?m)^`+id+` +licence\.renew +portal +\S+ +\S+ +held +-$`)

	// show has what a reviewer needs, the subject masked.
	out, _ = mustFerryctl(t, 0, "approve", "show", "--config", cfg, id)
	matches(t, "stdout", out, `(?m)^operation +licence\.renew$`)
	matches(t, "stdout", out, `(?m)^subject +330106\*{8}0696$`)
	if strings.Contains(out, sample.Citizens()[0].IDNumber) {
		t.Fatal("show prints the subject unmasked")
	}

	// An admin who signed the policy in force may not approve.
	_, errOut := mustFerryctl(t, 1, "approve", "--config", cfg, "--key", key("admin1"), id)
	matches(t, "stderr", errOut, `admin1 .*signed the policy in force`)
	matches(t, "stderr", errOut, `(?m)^hint: separation of duties`)
	// Nor an admin the intranet does not know.
	other := t.TempDir()
	mustFerryctl(t, 0, "admin", "keygen", "--dir", other, "mallory")
	_, errOut = mustFerryctl(t, 1, "approve", "--config", cfg, "--key", filepath.Join(other, "mallory"+admin.KeySuffix), id)
	matches(t, "stderr", errOut, `mallory .*is not a known admin`)
	// Usage errors.
	mustFerryctl(t, 2, "approve", "--config", cfg, "--key", key("admin3"), "not-an-id")
	mustFerryctl(t, 2, "approve", "--config", cfg, id)
	mustFerryctl(t, 2, "approve", "list")
	_, errOut = mustFerryctl(t, 1, "approve", "--config", cfg, "--key", key("admin3"), strings.Repeat("0", 32))
	matches(t, "stderr", errOut, `no such held request`)
	entries, _ := os.ReadDir(filepath.Join(dir, "intranet", "approvals"))
	for _, e := range entries {
		if !e.IsDir() {
			t.Fatalf("a refused approve wrote %s", e.Name())
		}
	}

	// The reviewer approves: a signed approval the agent will verify.
	out, _ = mustFerryctl(t, 0, "approve", "--config", cfg, "--key", key("admin3"), id)
	matches(t, "stdout", out, `^approved request `+id+` \(licence\.renew, held \S+\) as admin3 \(key [0-9a-f]+\)\n`)
	data, err := os.ReadFile(filepath.Join(dir, "intranet", "approvals", admin.ApprovalFileName(id, "admin3")))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := admin.LoadKeyring(filepath.Join(dir, "intranet", "keys", "admins"))
	if err != nil {
		t.Fatal(err)
	}
	ap, by, err := admin.VerifyApproval(data, ring)
	if err != nil || by != "admin3" || ap.RequestID != id || ap.Decision != admin.DecisionApprove || time.Since(ap.Time) > time.Minute {
		t.Fatalf("approval file: %+v by %s (%v)", ap, by, err)
	}
	out, _ = mustFerryctl(t, 0, "approve", "--config", cfg, "--key", key("admin3"), "--deny", id)
	matches(t, "stdout", out, `^denied request `+id)

	// --json lists without personal data.
	out, _ = mustFerryctl(t, 0, "approve", "list", "--config", cfg, "--all", "--json")
	var list []heldJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Request != id || list[0].State != replica.HeldWaiting {
		t.Fatalf("list --json: %s (%v)", out, err)
	}
	if list[0].Params != nil || list[0].Subject != "" {
		t.Fatal("list --json shows personal data")
	}
}
