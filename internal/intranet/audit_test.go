package intranet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// TestAgent_Audit: each request's policy decision, the envelope applied
// and the results sealed and published are in the zone's audit log when
// the agent stops; the log verifies with the audit public key alone and
// holds no subject in clear.
func TestAgent_Audit(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)
	reqs := e.bookings(t, 2)
	env := e.send(t, reqs)
	e.waitAcked(t, env.Header.ID)
	r.stop(t)

	v, err := keys.ReadAuditPub(filepath.Join(e.cfg.Keys, keys.AuditPubFile), "intranet")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), e.cfg.AuditLog, v, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uncommitted != 0 {
		t.Errorf("%d entries not under a checkpoint after a clean stop", rep.Uncommitted)
	}
	db, err := sqlitedb.Open(context.Background(), e.cfg.AuditLog, sqlitedb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT body FROM audit_entries ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	decided := map[string]audit.Entry{}
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
		if en.Event == audit.EventPolicyDecision {
			decided[en.Request] = en
		}
	}
	rows.Close()
	for _, want := range []string{audit.EventPolicyDecision, audit.EventEnvelopeOpened, audit.EventEnvelopeSealed, audit.EventEnvelopePublished} {
		if !slices.Contains(events, want) {
			t.Errorf("no %s in the audit log: %v", want, events)
		}
	}
	for _, req := range reqs {
		d, ok := decided[req.ID]
		if !ok || d.Operation != req.Operation || d.Decision == "" || d.Subject == "" || d.Envelope != env.Header.ID {
			t.Errorf("decision of request %s: %+v", req.ID, d)
		}
	}
	for _, f := range []string{e.cfg.AuditLog, e.cfg.AuditLog + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, c := range sample.Citizens() {
			if bytes.Contains(raw, []byte(c.IDNumber)) {
				t.Errorf("%s holds an ID number in clear", filepath.Base(f))
			}
		}
	}
}
