package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/client"
	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// Demo timing bounds.
const (
	demoStartTimeout  = 30 * time.Second
	demoResultTimeout = 30 * time.Second
	demoStopTimeout   = 15 * time.Second
)

type demoOptions struct {
	Dir    string
	BinDir string
}

func (o *demoOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Dir, "dir", "", "create the deployment in `DIR` (default: a new temporary directory)")
	cmd.Flags().StringVar(&o.BinDir, "bin", "", "`directory` holding dmz-agent and intranet-agent (default: beside ferryctl)")
}

func newDemoCmd(g *globals) *cobra.Command {
	var opts demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a full two-zone round trip on the sample deployment",
		Long: `Run a full two-zone round trip: create a deployment (as 'ferryctl init'),
start dmz-agent and intranet-agent as processes, send sample citizen requests
over the HTTP API (including ones the policy rejects), print each result as a
user would read it, stop both agents, verify both zones' audit logs as an
auditor would, and tell where the files are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), opts, g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// agentProc is a started agent process.
type agentProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error

	stopOnce sync.Once
	stopErr  error
}

func startAgent(bin, name, config, logPath string) (*agentProc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, name), "-config", config, "-log-format", "json")
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, withHint(fmt.Errorf("start %s: %w", name, err), "run 'make build' first, or pass --bin DIR")
	}
	p := &agentProc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	return p, nil
}

// stop sends SIGTERM and waits for a clean exit, killing the process if it
// does not stop in time.
// Stopping twice (once in order, once by a deferred cleanup) is fine: the
// second call returns the first call's result.
func (p *agentProc) stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stopNow() })
	return p.stopErr
}

func (p *agentProc) stopNow() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("%s exited: %w (log: %s)", p.name, err, p.log)
		}
		return nil
	case <-time.After(demoStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s and was killed (log: %s)", p.name, demoStopTimeout, p.log)
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func runDemo(ctx context.Context, opts demoOptions, out io.Writer) error {
	bin := opts.BinDir
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		bin = filepath.Dir(exe)
	}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ferry-demo-")
		if err != nil {
			return err
		}
		dir = d
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "== 1. create a two-zone deployment (ferryctl init)\n")
	dep, err := runInit(ctx, initOptions{Listen: addr, Client: defaultClient}, dir, out)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\n== 2. start both agents as processes\n")
	intra, err := startAgent(bin, "intranet-agent", dep.IntranetConfig, filepath.Join(dep.Dir, "intranet", "agent.log"))
	if err != nil {
		return err
	}
	defer intra.stop()
	dmzp, err := startAgent(bin, "dmz-agent", dep.DMZConfig, filepath.Join(dep.Dir, "dmz", "agent.log"))
	if err != nil {
		return err
	}
	defer dmzp.stop()
	c0, err := client.New("http://"+addr, dep.Token)
	if err != nil {
		return err
	}
	api := &demoClient{c: c0}
	if err := api.waitReady(ctx, dmzp); err != nil {
		return err
	}
	fmt.Fprintf(out, "  intranet-agent pid %d, log %s\n", intra.cmd.Process.Pid, intra.log)
	fmt.Fprintf(out, "  dmz-agent      pid %d, API http://%s, log %s\n", dmzp.cmd.Process.Pid, addr, dmzp.log)

	ops, err := api.c.Operations(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== 3. operations the policy allows (GET /v1/operations)\n")
	for _, op := range ops {
		fmt.Fprintf(out, "  %-18s %s\n", op.Name, op.Description)
	}

	c := sample.Citizens()[0]
	fmt.Fprintf(out, "\n== 4. citizen requests with the Go client package (POST /v1/requests, then GET /v1/requests/{id}?wait=30s)\n")
	fmt.Fprintf(out, "  citizen: %s, ID number %s, plate %s (synthetic sample data)\n", c.Name, c.IDNumber, c.Plate)
	fmt.Fprintf(out, "  the portal has authenticated the citizen and sends their ID number as the subject of each request\n")
	steps := demoSteps(c, sample.Citizens()[1])
	var slotID any
	for i, s := range steps {
		params := s.params
		if s.op == "exam.book" {
			if slotID == nil {
				return errors.New("demo: no exam slot found to book")
			}
			params["slot_id"] = slotID
		}
		fmt.Fprintf(out, "\n  %c) %s\n     %s %s\n", 'a'+i, s.title, s.op, compactJSON(params))
		st, err := api.c.Submit(ctx, client.Submission{Operation: s.op, Params: params, Subject: c.IDNumber})
		var refusal *client.Error
		if errors.As(err, &refusal) && !refusal.Temporary() {
			fmt.Fprintf(out, "     -> HTTP %d refused at the DMZ: %s (%s)\n", refusal.StatusCode, refusal.Message, refusal.Reason)
			if !s.expectRefusal {
				return fmt.Errorf("demo: %s was refused: %s", s.op, refusal.Reason)
			}
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "     -> HTTP %d %s, request id %s\n", http.StatusAccepted, st.Status, st.ID)
		if s.approve {
			if err := demoApproval(ctx, api, dep, st.ID, out); err != nil {
				return err
			}
		}
		res, err := api.wait(ctx, st.ID, false)
		if err != nil {
			return err
		}
		printResult(out, res)
		if s.op == "exam.slots" {
			slotID = firstSlot(rowsOf(res))
		}
		if s.expectRefusal && res.Status == "done" {
			return fmt.Errorf("demo: %s should have been refused", s.op)
		}
		if !s.expectRefusal && res.Status != "done" {
			return fmt.Errorf("demo: %s ended %s", s.op, res.Status)
		}
	}

	fmt.Fprintf(out, "\n== 5. stop both agents (SIGTERM: drain, then exit 0)\n")
	errDMZ := dmzp.stop()
	errIn := intra.stop()
	if err := errors.Join(errDMZ, errIn); err != nil {
		return err
	}
	fmt.Fprintf(out, "  both agents stopped cleanly\n")

	fmt.Fprintf(out, "\n== 6. the auditor's check: each zone's audit log, offline, with the public keys alone, against the copies the other zone countersigned; then the two logs against each other\n")
	for _, zone := range []string{"dmz", "intranet"} {
		other := map[string]string{"dmz": "intranet", "intranet": "dmz"}[zone]
		dir, witness := filepath.Join(dep.Dir, zone, "state"), filepath.Join(dep.Dir, other, "state")
		pub, witnessPub := filepath.Join(dep.Dir, zone, "keys", keys.AuditPubFile), filepath.Join(dep.Dir, other, "keys", keys.AuditPubFile)
		fmt.Fprintf(out, "     $ ferryctl audit verify %s --pubkey %s \\\n         --witness %s --witness-pubkey %s\n", dir, pub, witness, witnessPub)
		var buf bytes.Buffer
		if err := runAuditVerify(ctx, auditVerifyOptions{PubKey: pub, Witness: witness, WitnessPubKey: witnessPub}, dir, &buf); err != nil {
			return fmt.Errorf("demo: audit log of zone %s: %w\n%s", zone, err, buf.String())
		}
		for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			fmt.Fprintf(out, "       %s\n", line)
		}
	}
	dmzState, inState := filepath.Join(dep.Dir, "dmz", "state"), filepath.Join(dep.Dir, "intranet", "state")
	fmt.Fprintf(out, "     $ ferryctl audit reconcile %s %s\n", dmzState, inState)
	var rec bytes.Buffer
	if err := runAuditReconcile(ctx, auditReconcileOptions{}, dmzState, inState, &rec); err != nil {
		return fmt.Errorf("demo: the two zones' audit logs do not reconcile: %w\n%s", err, rec.String())
	}
	for _, line := range strings.Split(strings.TrimRight(rec.String(), "\n"), "\n") {
		fmt.Fprintf(out, "       %s\n", line)
	}
	fmt.Fprintf(out, "\n== files\n")
	fmt.Fprintf(out, "  deployment      %s\n", dep.Dir)
	fmt.Fprintf(out, "  DMZ spool       %s\n", filepath.Join(dep.Dir, "dmz", "state", "spool.db"))
	fmt.Fprintf(out, "  replica         %s\n", filepath.Join(dep.Dir, "intranet", "replica.db"))
	fmt.Fprintf(out, "  audit logs      %s, %s\n", filepath.Join(dep.Dir, "dmz", "state", audit.FileName), filepath.Join(dep.Dir, "intranet", "state", audit.FileName))
	fmt.Fprintf(out, "  agent logs      %s, %s\n", dmzp.log, intra.log)
	fmt.Fprintf(out, "  quarantine      %s, %s\n", filepath.Join(dep.Dir, "dmz", "state", "quarantine"), filepath.Join(dep.Dir, "intranet", "state", "quarantine"))
	fmt.Fprintf(out, "demo complete: the round trip works\n")
	return nil
}

type demoStep struct {
	title         string
	op            string
	params        map[string]any
	expectRefusal bool
	approve       bool // held for approval: the reviewer approves it
}

// demoApproval waits until request id is held on the intranet, shows that
// an admin who signed the policy may not approve it, and approves it as
// the demo's reviewer, as an admin would with ferryctl approve.
func demoApproval(ctx context.Context, api *demoClient, dep *deployment, id string, out io.Writer) error {
	st, err := api.wait(ctx, id, true)
	if err != nil {
		return err
	}
	if st.Status != "held" {
		return fmt.Errorf("demo: request %s ended %s, want held for approval", id, st.Status)
	}
	printResult(out, st)
	admins := filepath.Join(dep.Dir, "admins")
	fmt.Fprintf(out, "     $ ferryctl approve --config %s --key %s %s\n", dep.IntranetConfig, filepath.Join(admins, "admin1"+admin.KeySuffix), id)
	err = runApprove(ctx, approveOptions{Config: dep.IntranetConfig, Key: filepath.Join(admins, "admin1"+admin.KeySuffix)}, id, io.Discard)
	if err == nil {
		return errors.New("demo: an admin who signed the policy approved a request under it")
	}
	fmt.Fprintf(out, "       refused: %v\n", err)
	fmt.Fprintf(out, "     $ ferryctl approve --config %s --key %s %s\n", dep.IntranetConfig, filepath.Join(admins, demoReviewer+admin.KeySuffix), id)
	var buf strings.Builder
	if err := runApprove(ctx, approveOptions{Config: dep.IntranetConfig, Key: filepath.Join(admins, demoReviewer+admin.KeySuffix)}, id, &buf); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		fmt.Fprintf(out, "       %s\n", line)
	}
	return nil
}

// demoSteps are the requests citizen c makes; other is another citizen
// whose records c must not see.
func demoSteps(c, other sample.Citizen) []demoStep {
	return []demoStep{
		{title: "query my traffic violations", op: "violations.query", params: map[string]any{"plate": c.Plate}},
		{title: "query my licence status and points (the holder's details come back masked)", op: "licence.status", params: map[string]any{}},
		{title: "list exam slots for subject 1", op: "exam.slots", params: map[string]any{"subject": 1}},
		{title: "book an exam appointment (a write)", op: "exam.book", params: map[string]any{}},
		{title: "renew my licence (a write an admin must approve first)", op: "licence.renew", params: map[string]any{}, approve: true},
		{title: "another citizen's violations: the subject binding refuses it", op: "violations.query", params: map[string]any{"id_number": other.IDNumber, "plate": other.Plate}, expectRefusal: true},
		{title: "an ID number with a wrong check digit: the policy refuses it", op: "licence.status", params: map[string]any{"id_number": wrongCheckDigit(c.IDNumber)}, expectRefusal: true},
		{title: "an operation the policy does not list: default deny", op: "drivers.export", params: map[string]any{}, expectRefusal: true},
	}
}

// wrongCheckDigit returns id with its last character, the GB 11643 check
// digit, replaced by another.
func wrongCheckDigit(id string) string {
	last := byte('0')
	if id[len(id)-1] == '0' {
		last = '1'
	}
	return id[:len(id)-1] + string(last)
}

func firstSlot(rows []map[string]any) any {
	for _, r := range rows {
		for _, k := range []string{"slot_id", "id"} {
			if v, ok := r[k]; ok {
				return v
			}
		}
	}
	return nil
}

// rowsOf returns the rows of a done read request.
func rowsOf(r *client.Request) []map[string]any {
	var rows []map[string]any
	if r.Rows(&rows) != nil {
		return nil
	}
	return rows
}

func printResult(out io.Writer, r *client.Request) {
	switch r.Status {
	case "done":
		rows := rowsOf(r)
		if len(rows) == 0 && r.RowsAffected != nil && *r.RowsAffected > 0 {
			fmt.Fprintf(out, "     -> done: %d row(s) written on the intranet replica\n", *r.RowsAffected)
			return
		}
		fmt.Fprintf(out, "     -> done: %d row(s)\n", len(rows))
		for i, row := range rows {
			if i == 5 {
				fmt.Fprintf(out, "        ... %d more\n", len(rows)-5)
				break
			}
			fmt.Fprintf(out, "        %s\n", formatRow(row))
		}
	default:
		fmt.Fprintf(out, "     -> %s: %s (%s)\n", r.Status, r.Message, r.Reason)
	}
}

func formatRow(row map[string]any) string {
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, row[k]))
	}
	return strings.Join(parts, "  ")
}

func compactJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// demoClient is the demo's client of the DMZ API: the Go client package
// (client), as a platform's backend would use it.
type demoClient struct {
	c *client.Client
}

func (c *demoClient) waitReady(ctx context.Context, p *agentProc) error {
	deadline := time.Now().Add(demoStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited during start: %v (log: %s)", p.name, err, p.log)
		default:
		}
		if c.c.Ready(ctx) == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s (log: %s)", p.name, demoStartTimeout, p.log)
}

// wait long-polls request id until it is final, or held when held.
func (c *demoClient) wait(ctx context.Context, id string, held bool) (*client.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, demoResultTimeout)
	defer cancel()
	r, err := c.c.Wait(ctx, id, held)
	if err != nil {
		return nil, fmt.Errorf("request %s: no result within %s: %w", id, demoResultTimeout, err)
	}
	return r, nil
}
