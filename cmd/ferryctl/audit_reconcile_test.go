package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
)

// exchange is what the two zones' logs record of a run: the entries of
// each, in order.
type exchange struct {
	dmz, intranet []audit.Entry
	at            time.Time
}

// reconcileID returns a test id: an envelope's "e…", a request's "r…",
// 32 characters like the real ones.
func reconcileID(kind string, n int) string { return fmt.Sprintf("%s%031d", kind, n) }

func (x *exchange) tick() time.Time { x.at = x.at.Add(time.Second); return x.at }

// d and i append an entry to the DMZ's and the intranet's log.
func (x *exchange) d(e audit.Entry) { e.Zone, e.Time = "dmz", x.tick(); x.dmz = append(x.dmz, e) }
func (x *exchange) i(e audit.Entry) {
	e.Zone, e.Time = "intranet", x.tick()
	x.intranet = append(x.intranet, e)
}

// accept records request r accepted at the DMZ for op.
func (x *exchange) accept(r, op string) {
	x.d(audit.Entry{Event: audit.EventRequestAccepted, Actor: "app", Request: r, Operation: op, Subject: strings.Repeat("5", 32)})
}

// seal records envelope env sealed (detail: its kind, and the re-send)
// and published at the DMZ.
func (x *exchange) seal(env, detail string, count int64) {
	x.d(audit.Entry{Event: audit.EventEnvelopeSealed, Envelope: env, Channel: "requests", Count: count, Detail: detail})
	x.d(audit.Entry{Event: audit.EventEnvelopePublished, Envelope: env, Count: 1})
}

// open records envelope env opened at the intranet.
func (x *exchange) open(env string, count int64) {
	x.i(audit.Entry{Event: audit.EventEnvelopeOpened, Envelope: env, Channel: "requests", Count: count})
}

// decide records the intranet's decision of request r of envelope env.
func (x *exchange) decide(r, env, op, decision string) {
	x.i(audit.Entry{Event: audit.EventPolicyDecision, Actor: "app", Request: r, Envelope: env, Operation: op, Decision: decision})
}

// result records at the DMZ a result of request r in result envelope res.
func (x *exchange) result(r, res, decision, reason string) {
	x.d(audit.Entry{Event: audit.EventResultReceived, Request: r, Envelope: res, Decision: decision, Reason: reason})
}

func (x *exchange) ack(env, by string) {
	x.d(audit.Entry{Event: audit.EventAck, Envelope: env, Detail: "acknowledged by " + by})
}

// resultEnvelope records result envelope res sealed and published at the
// intranet and opened at the DMZ.
func (x *exchange) resultEnvelope(res string) {
	x.i(audit.Entry{Event: audit.EventEnvelopeSealed, Envelope: res, Channel: "results", Seq: 1, Count: 1})
	x.i(audit.Entry{Event: audit.EventEnvelopePublished, Envelope: res, Count: 1})
	x.d(audit.Entry{Event: audit.EventEnvelopeOpened, Envelope: res, Channel: "results", Seq: 1, Count: 1})
}

const (
	opQuery = "violations.query"
	opRenew = "licence.renew"
)

// newExchange returns a consistent exchange: three requests in envelope
// e1 (done, rejected, and held then approved); request r4 in envelope e2,
// lost on the medium and re-sent as e3, which arrived; a heartbeat e4.
func newExchange() *exchange {
	x := &exchange{at: time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)}
	r1, r2, r3, r4 := reconcileID("r", 1), reconcileID("r", 2), reconcileID("r", 3), reconcileID("r", 4)
	e1, e2, e3, e4 := reconcileID("e", 1), reconcileID("e", 2), reconcileID("e", 3), reconcileID("e", 4)
	x1, x2, x3 := reconcileID("x", 1), reconcileID("x", 2), reconcileID("x", 3)
	x.accept(r1, opQuery)
	x.accept(r2, opQuery)
	x.accept(r3, opRenew)
	x.seal(e1, "requests", 3)
	x.open(e1, 3)
	x.decide(r1, e1, opQuery, "done")
	x.decide(r2, e1, opQuery, "rejected")
	x.decide(r3, e1, opRenew, "held")
	x.resultEnvelope(x1)
	x.result(r1, x1, "done", "")
	x.result(r2, x1, "rejected", "not_allowed")
	x.result(r3, x1, "held", "approval_required")
	x.ack(e1, x1)
	x.resultEnvelope(x2)
	x.result(r3, x2, "done", "") // approved at the intranet

	x.accept(r4, opQuery)
	x.seal(e2, "requests", 1)
	x.seal(e3, "requests, re-sends "+e2, 0) // e2 was lost: its request goes again in e3
	x.open(e3, 1)
	x.decide(r4, e3, opQuery, "done")
	x.resultEnvelope(x3)
	x.result(r4, x3, "done", "")
	x.ack(e3, x3)

	x.seal(e4, "heartbeat", 0)
	x.open(e4, 0)
	x.ack(e4, x3)
	return x
}

// reconcileZone is a zone's audit directory and public key.
type reconcileZone struct{ dir, pub string }

// write writes the exchange's logs, each with a checkpoint, and returns
// the zones' audit directories and keys.
func (x *exchange) write(t *testing.T) (dmzZone, intranetZone reconcileZone) {
	t.Helper()
	root := t.TempDir()
	one := func(zone string, entries []audit.Entry) reconcileZone {
		ctx := context.Background()
		keyDir := filepath.Join(root, zone, "keys")
		if err := keys.GenerateAudit(keyDir, zone); err != nil {
			t.Fatal(err)
		}
		ak, err := keys.LoadAudit(keyDir, zone)
		if err != nil {
			t.Fatal(err)
		}
		z := reconcileZone{dir: filepath.Join(root, zone, "state"), pub: filepath.Join(keyDir, keys.AuditPubFile)}
		log, err := audit.OpenLog(ctx, filepath.Join(z.dir, audit.FileName), zone, ak.Signer)
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		if len(entries) > 0 {
			if _, err := log.Append(ctx, entries...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		return z
	}
	return one("dmz", x.dmz), one("intranet", x.intranet)
}

// reconcileJSON runs audit reconcile --json, wanting exit code want, and
// decodes its output.
func reconcileJSON(t *testing.T, want int, args ...string) auditReconcileJSON {
	t.Helper()
	stdout, _ := mustFerryctl(t, want, append([]string{"audit", "reconcile", "--json"}, args...)...)
	var out auditReconcileJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	return out
}

func TestAuditReconcile(t *testing.T) {
	r := func(n int) string { return reconcileID("r", n) }
	e := func(n int) string { return reconcileID("e", n) }
	for _, tc := range []struct {
		name   string
		change func(x *exchange)
		code   int
		stdout []string // lines or parts of lines the text output holds
		check  func(t *testing.T, out auditReconcileJSON)
	}{
		{
			name: "consistent",
			code: 0,
			stdout: []string{
				"  envelopes    3 published, 3 received, 0 expired or dropped, 0 not received\n",
				"  requests     4 accepted at the DMZ, 4 decided at the intranet, 4 with a result at the DMZ\n",
				"  violations.query         done              2        2\n",
				"  licence.renew            held              1        1\n",
				"decided after a hold, the approval not in the intranet's log (not differences):\n  request " + r(3) + ": intranet decided licence.renew/held, the DMZ received licence.renew/held, licence.renew/done\n",
				"reconciled: no differences\n",
			},
			check: func(t *testing.T, out auditReconcileJSON) {
				c := out.Counts
				if !out.OK || c.Envelopes != 3 || c.Received != 3 || c.Accepted != 4 || c.Decided != 4 || c.Results != 4 || c.Differences != 0 ||
					len(out.Operations) != 3 || len(out.DecidedAfterHold) != 1 || len(out.ExpiredEnvelopes) != 0 {
					t.Errorf("%+v", out)
				}
			},
		},
		{
			name: "missing envelope",
			change: func(x *exchange) {
				x.accept(r(5), opQuery)
				x.seal(e(5), "requests", 1)
			},
			code: 1,
			stdout: []string{
				"  missing envelope " + e(5) + " (requests): published by the DMZ, never opened or acknowledged by the intranet\n",
				"  request " + r(5) + ": accepted at the DMZ, never decided at the intranet\n",
				"DIFFERENCES (2):\n",
			},
			check: func(t *testing.T, out auditReconcileJSON) {
				d := out.Differences
				if out.OK || len(d.MissingEnvelopes) != 1 || d.MissingEnvelopes[0].ID != e(5) || !slices.Equal(d.NotDecided, []string{r(5)}) {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "re-send never received",
			change: func(x *exchange) {
				x.accept(r(5), opQuery)
				x.seal(e(5), "requests", 1)
				x.seal(e(6), "requests, re-sends "+e(5), 0)
				x.seal(e(7), "requests, re-sends "+e(6), 0)
			},
			code:   1,
			stdout: []string{"  missing envelope " + e(7) + " (requests), re-sending " + e(5) + ", " + e(6) + ": published by the DMZ"},
			check: func(t *testing.T, out auditReconcileJSON) {
				d := out.Differences
				if len(d.MissingEnvelopes) != 1 || !slices.Equal(d.MissingEnvelopes[0].Resends, []string{e(5), e(6)}) || out.Counts.Envelopes != 4 {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			// Without its re-send link, e2 (which e3 replaced) is missing:
			// the consistent case passes because reconcile follows it.
			name: "re-send link lost",
			change: func(x *exchange) {
				for k, en := range x.dmz {
					if en.Envelope == e(3) && en.Event == audit.EventEnvelopeSealed {
						x.dmz[k].Detail = "requests"
					}
				}
			},
			code:   1,
			stdout: []string{"  missing envelope " + e(2) + " (requests): published by the DMZ"},
		},
		{
			name: "result not received",
			change: func(x *exchange) {
				x.accept(r(6), opQuery)
				x.seal(e(6), "requests", 1)
				x.open(e(6), 1)
				x.decide(r(6), e(6), opQuery, "done")
				x.ack(e(6), reconcileID("x", 9))
			},
			code: 1,
			stdout: []string{
				"  request " + r(6) + ": result not received: decided violations.query/done at the intranet, no result at the DMZ\n",
				"  count violations.query done: intranet 3, DMZ 2\n",
			},
			check: func(t *testing.T, out auditReconcileJSON) {
				d := out.Differences
				if len(d.ResultsNotReceived) != 1 || d.ResultsNotReceived[0].ID != r(6) || len(d.Counts) != 1 || len(d.MissingEnvelopes) != 0 {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "count mismatch",
			change: func(x *exchange) {
				for k, en := range x.dmz {
					if en.Event == audit.EventResultReceived && en.Request == r(2) {
						x.dmz[k].Decision = "done"
					}
				}
			},
			code: 1,
			stdout: []string{
				"  request " + r(2) + ": intranet decided violations.query/rejected, the DMZ received violations.query/done\n",
				"  count violations.query done: intranet 2, DMZ 3\n",
				"  count violations.query rejected: intranet 1, DMZ 0\n",
				"DIFFERENCES (3):\n",
			},
		},
		{
			name: "decided, never accepted",
			change: func(x *exchange) {
				x.open(e(8), 1)
				x.decide(r(8), e(8), opQuery, "done")
				x.result(r(8), reconcileID("x", 8), "done", "")
			},
			code: 1,
			stdout: []string{
				"  envelope " + e(8) + ": opened by the intranet, never sealed by the DMZ\n",
				"  request " + r(8) + ": decided at the intranet, never accepted at the DMZ\n",
				// The DMZ knows no operation for it.
				"  request " + r(8) + ": intranet decided violations.query/done, the DMZ received /done\n",
			},
		},
		{
			name: "expired and dropped, not received",
			change: func(x *exchange) {
				x.accept(r(5), opQuery)
				x.seal(e(5), "requests", 1)
				x.d(audit.Entry{Event: audit.EventEnvelopeExpired, Envelope: e(5)})
				x.accept(r(6), opRenew)
				x.seal(e(6), "requests", 1)
				x.seal(e(7), "requests, re-sends "+e(6), 0)
				x.d(audit.Entry{Event: audit.EventAdmin, Actor: "admin1", Envelope: e(7), Decision: "queue.drop", Count: 1})
				// The DMZ asks about both requests; the intranet never had them.
				x.seal(e(9), "query, asks about 2 requests", 0)
				x.open(e(9), 0)
				x.resultEnvelope(reconcileID("x", 9))
				x.result(r(5), reconcileID("x", 9), "expired", "not_received")
				x.result(r(6), reconcileID("x", 9), "expired", "not_received")
				x.ack(e(9), reconcileID("x", 9))
			},
			code: 0,
			stdout: []string{
				"  envelopes    6 published, 4 received, 2 expired or dropped, 0 not received\n",
				"expired/dropped, not received (not differences):\n" +
					"  envelope " + e(5) + " (requests): expired\n" +
					"  envelope " + e(7) + " (requests), re-sending " + e(6) + ": dropped\n" +
					"  request " + r(5) + ": settled expired, not received\n" +
					"  request " + r(6) + ": settled expired, not received\n",
				"reconciled: no differences\n",
			},
			check: func(t *testing.T, out auditReconcileJSON) {
				if !out.OK || len(out.ExpiredEnvelopes) != 2 || !slices.Equal(out.ExpiredRequests, []string{r(5), r(6)}) {
					t.Errorf("%+v", out)
				}
			},
		},
		{
			// Its envelope expired, but the DMZ has not asked the intranet
			// about it yet: the log does not say it was in that envelope.
			name: "expired, not yet settled",
			change: func(x *exchange) {
				x.accept(r(5), opQuery)
				x.seal(e(5), "requests", 1)
				x.d(audit.Entry{Event: audit.EventEnvelopeExpired, Envelope: e(5)})
			},
			code:   1,
			stdout: []string{"  envelope " + e(5) + " (requests): expired\n", "  request " + r(5) + ": accepted at the DMZ, never decided at the intranet\n", "DIFFERENCES (1):\n"},
		},
		{
			// The intranet acknowledged e5 and answered its request; its
			// log lacks the opening (say, pruned): e5 was received.
			name: "acknowledged, opening not in the log",
			change: func(x *exchange) {
				x.accept(r(5), opQuery)
				x.seal(e(5), "requests", 1)
				x.decide(r(5), e(5), opQuery, "done")
				x.result(r(5), reconcileID("x", 5), "done", "")
				x.ack(e(5), reconcileID("x", 5))
			},
			code:   0,
			stdout: []string{"  envelopes    4 published, 4 received, 0 expired or dropped, 0 not received\n"},
		},
		{
			name: "heartbeat lost",
			change: func(x *exchange) {
				x.seal(e(5), "heartbeat", 0)
			},
			code:   0,
			stdout: []string{"heartbeat and query envelopes not received (they carry no requests; not differences):\n  envelope " + e(5) + " (heartbeat)\n"},
		},
		{
			name: "approval in the intranet's log",
			change: func(x *exchange) {
				x.i(audit.Entry{Event: audit.EventAdmin, Actor: "carol", Request: r(3), Operation: opRenew, Decision: "done",
					Detail: "approval of a held request"})
			},
			code: 0,
			stdout: []string{
				"  licence.renew            done              1        1\n",
				"  licence.renew            held              1        1\n",
				"reconciled: no differences\n",
			},
			check: func(t *testing.T, out auditReconcileJSON) {
				if !out.OK || len(out.DecidedAfterHold) != 0 {
					t.Errorf("an approval in the log still listed as decided after a hold: %+v", out.DecidedAfterHold)
				}
			},
		},
		{
			name: "held, final result without hold",
			change: func(x *exchange) {
				// The DMZ never saw r3 held: its done is not the approval's.
				x.dmz = slices.DeleteFunc(x.dmz, func(en audit.Entry) bool {
					return en.Event == audit.EventResultReceived && en.Request == r(3) && en.Decision == "held"
				})
			},
			code: 1,
			stdout: []string{
				"  request " + r(3) + ": intranet decided licence.renew/held, the DMZ received licence.renew/done\n",
				"  count licence.renew done: intranet 0, DMZ 1\n",
				"  count licence.renew held: intranet 1, DMZ 0\n",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange()
			if tc.change != nil {
				tc.change(x)
			}
			dz, iz := x.write(t)
			stdout, stderr := mustFerryctl(t, tc.code, "audit", "reconcile", dz.dir, iz.dir)
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			if tc.code == 1 {
				matches(t, "stderr", stderr, `^ferryctl: error: audit reconcile: \d+ differences? between the logs\nhint: `)
			}
			out := reconcileJSON(t, tc.code, dz.dir, iz.dir, "--pubkey-dmz", dz.pub, "--pubkey-intranet", iz.pub)
			if out.OK != (tc.code == 0) || out.Counts.Differences != out.Differences.total() {
				t.Errorf("--json: ok %v, %d differences, %+v", out.OK, out.Counts.Differences, out.Differences)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestAuditReconcile_Refusals(t *testing.T) {
	x := newExchange()
	dz, iz := x.write(t)

	t.Run("one pubkey", func(t *testing.T) {
		_, stderr := mustFerryctl(t, 2, "audit", "reconcile", dz.dir, iz.dir, "--pubkey-dmz", dz.pub)
		matches(t, "stderr", stderr, `give both --pubkey-dmz and --pubkey-intranet, or neither`)
	})
	t.Run("one argument", func(t *testing.T) {
		mustFerryctl(t, 2, "audit", "reconcile", dz.dir)
	})
	t.Run("swapped", func(t *testing.T) {
		stdout, stderr := mustFerryctl(t, 1, "audit", "reconcile", iz.dir, dz.dir)
		if stdout != "" {
			t.Errorf("stdout: %q", stdout)
		}
		matches(t, "stderr", stderr, `does not look like the DMZ's log .*\nhint: give the DMZ's audit directory first`)
	})
	t.Run("keys swapped", func(t *testing.T) {
		stdout, stderr := mustFerryctl(t, 1, "audit", "reconcile", dz.dir, iz.dir, "--pubkey-dmz", iz.pub, "--pubkey-intranet", dz.pub)
		matches(t, "stdout", stdout, `^FAIL: DMZ log .*audit.db: checkpoint at size \d+: `)
		matches(t, "stderr", stderr, `audit reconcile: the DMZ log .* failed verification`)
	})
	t.Run("altered log", func(t *testing.T) {
		// The intranet's log rewritten to hide a decision: the DMZ's log
		// still reconciles with it (the entry is gone), but verify fails.
		dz, iz := newExchange().write(t)
		tamperAudit(t, filepath.Join(iz.dir, audit.FileName),
			`UPDATE audit_entries SET body = replace(body, '"rejected"', '"done"') WHERE body LIKE '%"rejected"%'`)
		stdout, _ := mustFerryctl(t, 1, "audit", "reconcile", dz.dir, iz.dir, "--pubkey-dmz", dz.pub, "--pubkey-intranet", iz.pub)
		matches(t, "stdout", stdout, `^FAIL: intranet log .*: entry \d+: altered`)
		// Without the keys, the change shows as a difference.
		stdout, _ = mustFerryctl(t, 1, "audit", "reconcile", dz.dir, iz.dir)
		matches(t, "stdout", stdout, `count violations.query rejected: intranet 0, DMZ 1`)
	})
	t.Run("no log", func(t *testing.T) {
		_, stderr := mustFerryctl(t, 1, "audit", "reconcile", dz.dir, t.TempDir())
		matches(t, "stderr", stderr, `the directory holds no audit.db`)
	})
}
