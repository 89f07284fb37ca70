package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/client"
	"github.com/ferrybridge/ferry/internal/sample"
)

// TestClient: the Go client package against both agents as processes:
// a citizen's query and its rows, an idempotent resubmission, and the
// typed errors of a refusal at the DMZ and of a bad token.
func TestClient(t *testing.T) {
	d := newDeployment(t)
	d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New("http://"+d.addr, d.token)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	ops, err := c.Operations(ctx)
	if err != nil || len(ops) == 0 {
		t.Fatalf("operations: %v %v", ops, err)
	}
	me := sample.Citizens()[0]
	sub := client.Submission{Operation: "violations.query", Params: map[string]any{"plate": me.Plate}, Subject: me.IDNumber, IdempotencyKey: "e2e-client-1"}
	acc, err := c.Submit(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(ctx, sub)
	if err != nil || again.ID != acc.ID {
		t.Fatalf("resubmission: %+v %v, want id %s", again, err, acc.ID)
	}
	req, err := c.Wait(ctx, acc.ID)
	if err != nil || req.Status != client.StatusDone || req.Err() != nil {
		t.Fatalf("wait: %+v %v", req, err)
	}
	var rows []map[string]any
	if err := req.Rows(&rows); err != nil || len(rows) == 0 {
		t.Fatalf("rows %v %v", rows, err)
	}

	other := sample.Citizens()[1]
	_, err = c.Submit(ctx, client.Submission{Operation: "violations.query", Params: map[string]any{"id_number": other.IDNumber, "plate": other.Plate}, Subject: me.IDNumber})
	var e *client.Error
	if !errors.Is(err, client.ErrForbiddenSubject) || !errors.As(err, &e) || e.Param != "id_number" || e.StatusCode != 400 {
		t.Fatalf("another citizen's records: %v", err)
	}
	if _, err := c.Submit(ctx, client.Submission{Operation: "drivers.export"}); !errors.Is(err, client.ErrUnknownOperation) {
		t.Fatalf("unknown operation: %v", err)
	}
	bad, err := client.New("http://"+d.addr, "fy_not-a-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Status(ctx, acc.ID); !errors.Is(err, client.ErrInvalidToken) {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := c.Status(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}
