package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
)

// exchangePair is two zones' logs with their exchanges, as two agents
// hold them.
type exchangePair struct {
	dmz, intra   *zoneLog
	dx, ix       *Exchange
	dlogs, ilogs *bytes.Buffer
}

func newExchangePair(t *testing.T) *exchangePair { return newExchangePairTB(t) }

func newExchangePairTB(t testing.TB) *exchangePair {
	t.Helper()
	ds, dv := testKeys(t, "dmz")
	is, iv := testKeys(t, "intranet")
	p := &exchangePair{dmz: openZoneLog(t, "dmz", ds, dv), intra: openZoneLog(t, "intranet", is, iv),
		dlogs: new(bytes.Buffer), ilogs: new(bytes.Buffer)}
	var err error
	if p.dx, err = NewExchange(context.Background(), p.dmz.Log, dv, iv, slog.New(slog.NewTextHandler(p.dlogs, nil))); err != nil {
		t.Fatal(err)
	}
	if p.ix, err = NewExchange(context.Background(), p.intra.Log, iv, dv, slog.New(slog.NewTextHandler(p.ilogs, nil))); err != nil {
		t.Fatal(err)
	}
	return p
}

// part is what x puts in its next envelope.
func part(t *testing.T, x *Exchange) *batch.Audit {
	t.Helper()
	a, err := x.outgoing(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestExchange: two zones exchange audit parts in their envelopes; each
// countersigns the other's checkpoints as the logs grow, and keeps the
// countersigned copies of its own that come back. Lost and reordered
// envelopes raise no alarm.
func TestExchange(t *testing.T) {
	ctx := context.Background()
	p := newExchangePair(t)
	if a := part(t, p.dx); a != nil {
		t.Fatalf("a log without a checkpoint sends %+v", a)
	}
	var dmzSent []*batch.Audit // every part the DMZ sent, in order
	for round := range 6 {
		p.dmz.grow(t, 10*round, 10, false)
		p.intra.grow(t, 10*round, 3, false)
		a := part(t, p.dx)
		dmzSent = append(dmzSent, a)
		if err := p.ix.incoming(ctx, a); err != nil {
			t.Fatalf("round %d: intranet: %v", round, err)
		}
		if round == 2 {
			continue // the results envelope of this round is lost
		}
		if err := p.dx.incoming(ctx, part(t, p.ix)); err != nil {
			t.Fatalf("round %d: dmz: %v", round, err)
		}
	}
	// Every DMZ checkpoint was witnessed but one: after the lost
	// envelope the DMZ proved from the size it last knew countersigned,
	// not the one the intranet had countersigned since (stale, and
	// witnessed at the next). The DMZ holds the countersigned copies, and
	// the intranet's log says what it witnessed.
	kept, err := p.intra.Witnessed(ctx, Origin("dmz"))
	if err != nil || len(kept) != 5 {
		t.Fatalf("the intranet witnessed %d DMZ checkpoints (%v), want 5", len(kept), err)
	}
	cos, err := p.dmz.Cosigned(ctx)
	if err != nil || len(cos) != 5 {
		t.Fatalf("the DMZ kept %d countersigned checkpoints (%v), want 5", len(cos), err)
	}
	last, err := OpenCheckpoint([]byte(dmzSent[5].Checkpoint), p.dmz.v, Origin("dmz"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := OpenCosigned(cos[len(cos)-1], p.dmz.v, p.intra.v); err != nil || c != last {
		t.Fatalf("the newest countersigned: %+v, %v; want the last sent, %+v", c, err, last)
	}
	if got := countEvents(t, p.intra.file, EventWitnessed); got != 5 {
		t.Fatalf("%d audit.witnessed entries in the intranet's log, want 5", got)
	}
	// Envelopes arriving late or twice change nothing and alarm nobody.
	for _, a := range []*batch.Audit{dmzSent[1], dmzSent[4], dmzSent[0], dmzSent[5]} {
		if err := p.ix.incoming(ctx, a); err != nil {
			t.Fatalf("a late part: %v", err)
		}
	}
	if strings.Contains(p.ilogs.String()+p.dlogs.String(), "level=ERROR") {
		t.Fatalf("an alarm in an honest exchange:\n%s%s", p.ilogs, p.dlogs)
	}
	if _, err := Verify(ctx, p.dmz.file, p.dmz.v, VerifyOptions{Known: kept}); err != nil {
		t.Fatalf("the DMZ log against the intranet's copies: %v", err)
	}
	// Verify checks the copies each log keeps.
	for _, z := range []struct {
		log                *zoneLog
		witness            *zoneLog
		cosigned, witnessd int
	}{{p.dmz, p.intra, 5, 5}, {p.intra, p.dmz, 4, 5}} {
		rep, err := Verify(ctx, z.log.file, z.log.v, VerifyOptions{Witness: z.witness.v})
		if err != nil || rep.Cosigned != z.cosigned || rep.Witnessed != z.witnessd {
			t.Fatalf("Verify %s: %+v, %v; want %d countersigned copies and %d witnessed", z.log.Origin(), rep, err, z.cosigned, z.witnessd)
		}
	}
}

// TestVerify_cosigning: a countersigned copy altered, or one without the
// witness's signature, fails Verify; so does a kept checkpoint of the
// other zone without both signatures.
func TestVerify_cosigning(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, sql, want string
	}{
		{"copy without the witness's signature", `UPDATE audit_cosigned SET note = (SELECT note FROM audit_checkpoints WHERE size = audit_cosigned.size)`,
			"countersigned copy: cosigned checkpoint: want the signatures"},
		{"copy of another size", `UPDATE audit_cosigned SET size = size - 1`, "countersigned copy: holds a checkpoint of size"},
		{"kept checkpoint replaced", `UPDATE audit_witnessed SET note = CAST('x' AS BLOB)`, "kept here: not signed by both zones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newExchangePair(t)
			for round := range 2 {
				p.dmz.grow(t, 10*round, 10, false)
				p.intra.grow(t, 10*round, 10, false)
				p.ix.Incoming(ctx, part(t, p.dx))
				p.dx.Incoming(ctx, part(t, p.ix))
			}
			if _, err := Verify(ctx, p.dmz.file, p.dmz.v, VerifyOptions{Witness: p.intra.v}); err != nil {
				t.Fatalf("before: %v", err)
			}
			p.dmz.Close()
			tamper(t, p.dmz.file, tc.sql)
			_, err := Verify(ctx, p.dmz.file, p.dmz.v, VerifyOptions{Witness: p.intra.v})
			var f *Failure
			if !errors.As(err, &f) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a Failure with %q", err, tc.want)
			}
		})
	}
}

// TestExchange_rewritten: a DMZ whose log was rebuilt with its own key
// (its state replaced, the agent honest) finds, in the next countersigned
// checkpoint the intranet sends, one its log does not hold; it records
// that, and its next proof starts from that size, so the intranet catches
// the rebuilt log too: an error, and an audit.inconsistent entry in each
// log.
func TestExchange_rewritten(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		size  int  // of the rebuilt log
		early bool // caught at once: another root at a size witnessed
	}{
		{"larger", 40, false},
		{"same size", 20, true},
		{"smaller", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newExchangePair(t)
			p.dmz.grow(t, 0, 20, false)
			p.intra.grow(t, 0, 3, false)
			if err := p.ix.incoming(ctx, part(t, p.dx)); err != nil {
				t.Fatal(err)
			}

			forged := openZoneLog(t, "dmz", p.dmz.signer, p.dmz.v)
			forged.grow(t, 0, tc.size, true)
			fx := mustExchange(t, forged, p.intra)
			// Before it hears from the intranet, the rebuilt DMZ proves
			// from nothing: the intranet cannot check that yet, unless it
			// witnessed another checkpoint of that size.
			if err := p.ix.incoming(ctx, part(t, fx)); errors.Is(err, ErrInconsistent) != tc.early {
				t.Fatalf("a proof from 0: %v, want ErrInconsistent %v", err, tc.early)
			}
			if err := fx.incoming(ctx, part(t, p.ix)); !errors.Is(err, ErrInconsistent) {
				t.Fatalf("a countersigned checkpoint the log does not hold: %v, want ErrInconsistent", err)
			}
			if got := countEvents(t, forged.file, EventInconsistent); got != 1 {
				t.Fatalf("%d audit.inconsistent entries in the rebuilt DMZ log, want 1", got)
			}
			if err := p.ix.incoming(ctx, part(t, fx)); !errors.Is(err, ErrInconsistent) {
				t.Fatalf("the rebuilt log's checkpoint: %v, want ErrInconsistent", err)
			}
			want := 1
			if tc.early {
				want = 2
			}
			if got := countEvents(t, p.intra.file, EventInconsistent); got != want {
				t.Fatalf("%d audit.inconsistent entries in the intranet's log, want %d", got, want)
			}
			// The same part again is not recorded twice.
			if err := p.ix.incoming(ctx, part(t, fx)); err != nil {
				t.Fatalf("a repeat: %v", err)
			}
		})
	}
}

// TestExchange_refused: parts that do not check out are refused without
// harm: a checkpoint signed by another key, a bad proof, a countersigned
// note without the witness's signature.
func TestExchange_refused(t *testing.T) {
	ctx := context.Background()
	p := newExchangePair(t)
	p.dmz.grow(t, 0, 4, false)
	p.intra.grow(t, 0, 4, false)
	good := part(t, p.dx)
	os, ov := testKeys(t, "dmz")
	other := openZoneLog(t, "dmz", os, ov)
	other.grow(t, 0, 4, false)
	for _, tc := range []struct {
		name string
		a    *batch.Audit
		want string
	}{
		{"another key", part(t, mustExchange(t, other, p.intra)), "no verifiable signatures"},
		{"bad proof", &batch.Audit{Checkpoint: good.Checkpoint, Proof: "x"}, "proof"},
		{"not countersigned", &batch.Audit{Cosigned: part(t, p.ix).Checkpoint}, "want the signatures of the log and of its witness"},
		{"not a note", &batch.Audit{Checkpoint: "hello"}, "malformed note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := p.ix
			if tc.a.Cosigned != "" {
				x = p.dx
			}
			err := x.incoming(ctx, tc.a)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrInconsistent) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if err := p.ix.incoming(ctx, good); err != nil {
		t.Fatalf("the good part after the refused ones: %v", err)
	}
}

func mustExchange(t *testing.T, own, peer *zoneLog) *Exchange {
	t.Helper()
	x, err := NewExchange(context.Background(), own.Log, own.v, peer.v, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// countEvents counts the entries of the log at file with event.
func countEvents(t *testing.T, file, event string) int {
	t.Helper()
	n := 0
	for _, e := range entriesOf(t, file) {
		if e.Event == event {
			n++
		}
	}
	return n
}

// FuzzExchangeIncoming: the audit part of an envelope comes from the
// other zone. Whatever it holds, Incoming never panics, keeps only
// checkpoints signed by the other zone's key and countersigned copies
// signed by both, and leaves the witness's own log verifiable.
func FuzzExchangeIncoming(f *testing.F) {
	ctx := context.Background()
	p := newExchangePairTB(f)
	p.dx.logger, p.ix.logger = slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler)
	p.dmz.grow(f, 0, 5, false)
	p.intra.grow(f, 0, 5, false)
	good, err := p.dx.outgoing(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Checkpoint, good.From, good.Proof, "")
	p.dmz.grow(f, 5, 9, false)
	grown, err := p.dx.outgoing(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(grown.Checkpoint, int64(5), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "")
	back, err := p.ix.outgoing(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("", int64(0), "", back.Checkpoint)
	f.Add(strings.Replace(good.Checkpoint, "\n5\n", "\n6\n", 1), int64(0), "", "")
	f.Fuzz(func(t *testing.T, checkpoint string, from int64, proof, cosigned string) {
		a := &batch.Audit{Checkpoint: checkpoint, From: from, Proof: proof, Cosigned: cosigned}
		p.ix.Incoming(ctx, a) // as the intranet
		p.dx.Incoming(ctx, a) // as the DMZ: cosigned copies of its own log
		kept, err := p.intra.Witnessed(ctx, Origin("dmz"))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range kept {
			if _, err := OpenCosigned(msg, p.dmz.v, p.intra.v); err != nil {
				t.Fatalf("kept a checkpoint not signed by both zones: %v", err)
			}
		}
		cos, err := p.dmz.Cosigned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range cos {
			if _, err := OpenCosigned(msg, p.dmz.v, p.intra.v); err != nil {
				t.Fatalf("kept a countersigned copy not signed by both zones: %v", err)
			}
		}
	})
}
