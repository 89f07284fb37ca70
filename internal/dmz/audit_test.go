package dmz

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// TestAgent_Audit: what the agent accepts, refuses, seals and publishes is
// in the zone's audit log when it stops, the log verifies with the audit
// public key alone, and it holds no subject or parameter in clear.
func TestAgent_Audit(t *testing.T) {
	e := startEnv(t)
	id := e.submit(t)
	refused := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, `{"operation":"drivers.export","params":{}}`, nil)
	if refused.code != http.StatusBadRequest {
		t.Fatalf("an unknown operation: HTTP %d", refused.code)
	}
	e.takeRequests(t, 1)
	e.stop()

	file := e.cfg.AuditLog
	v, err := keys.ReadAuditPub(filepath.Join(e.cfg.Keys, keys.AuditPubFile), "dmz")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), file, v, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uncommitted != 0 {
		t.Errorf("%d entries not under a checkpoint after a clean stop", rep.Uncommitted)
	}
	db, err := sqlitedb.Open(context.Background(), file, sqlitedb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT body FROM audit_entries ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		en, err := audit.DecodeEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, en.Event)
		switch en.Event {
		case audit.EventRequestAccepted:
			if en.Request != id || en.Actor != "portal" || en.Subject == "" {
				t.Errorf("accepted entry %+v", en)
			}
		case audit.EventRequestRefused:
			if en.Actor != "portal" || en.Reason == "" {
				t.Errorf("refused entry %+v", en)
			}
		}
	}
	rows.Close()
	for _, want := range []string{audit.EventRequestAccepted, audit.EventRequestRefused, audit.EventEnvelopeSealed, audit.EventEnvelopePublished} {
		if !slices.Contains(events, want) {
			t.Errorf("no %s in the audit log: %v", want, events)
		}
	}
	c := sample.Citizens()[0]
	for _, f := range []string{file, file + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, pd := range []string{c.IDNumber, c.Plate} {
			if bytes.Contains(raw, []byte(pd)) {
				t.Errorf("%s holds %q in clear", filepath.Base(f), pd)
			}
		}
	}
}
