package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/envelope"
)

// carryRequests is the number of e2e.effect requests a disc-carry test
// submits; with batch.max_requests 2 they fill at least half as many
// request envelopes.
const carryRequests = 12

// carryWithin bounds a disc-carry test's carrying loop.
const carryWithin = 60 * time.Second

// carryExportOut is the part of `ferryctl carry export --json` the tests
// read.
type carryExportOut struct {
	Exported bool   `json:"exported"`
	Dir      string `json:"dir"`
	Set      *struct {
		Files []struct {
			Name string `json:"name"`
		} `json:"files"`
	} `json:"set"`
	Remaining int `json:"remaining"`
}

// carryProblem is a file 'carry import' did not import, and why.
type carryProblem struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// carryImportOut is `ferryctl carry import --json`.
type carryImportOut struct {
	Complete bool           `json:"complete"`
	Imported []string       `json:"imported"`
	Skipped  []carryProblem `json:"skipped"`
	Missing  []string       `json:"missing"`
	Corrupt  []carryProblem `json:"corrupt"`
	Extra    []string       `json:"extra"`
}

// discCarrier carries envelopes between the agents of a deployment made
// with viaFerries on "discs": carry sets under a directory of its own,
// exported from one agent's send directory and imported into the other's
// receive directory with the real ferryctl.
type discCarrier struct {
	d     *deployment
	discs string
	n     int // export runs so far; DISC<n> names the latest
}

func newDiscCarrier(t *testing.T, d *deployment) *discCarrier {
	t.Helper()
	return &discCarrier{d: d, discs: t.TempDir()}
}

func (c *discCarrier) dmzSend() string      { return filepath.Join(c.d.dir, "exchange", requestsOut) }
func (c *discCarrier) intranetRecv() string { return filepath.Join(c.d.dir, "exchange", "requests") }
func (c *discCarrier) intranetSend() string { return filepath.Join(c.d.dir, "exchange", resultsOut) }
func (c *discCarrier) dmzRecv() string      { return filepath.Join(c.d.dir, "exchange", "results") }
func (c *discCarrier) keys(zone string) string {
	return filepath.Join(c.d.dir, zone, "keys")
}

// carryCmd is the command `ferryctl carry args...`. The binaries are
// built with the race detector, which by default sleeps a second before
// exiting; the loop runs ferryctl often, so it is told not to. A race
// found still makes ferryctl exit 66, failing the test.
func carryCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "ferryctl"), append([]string{"carry"}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// export burns the next disc from send with zone's keys. It returns the
// disc's directory and files, or "" and nil when there was nothing to
// export.
func (c *discCarrier) export(t *testing.T, send, zone string) (string, []string) {
	t.Helper()
	c.n++
	disc := filepath.Join(c.discs, fmt.Sprintf("DISC%d", c.n))
	cmd := carryCmd("export", disc, "--from", send, "--keys", c.keys(zone), "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("carry export %s: %v\n%s", disc, err, stderr.Bytes())
	}
	var out carryExportOut
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("carry export %s: decode: %v\n%s", disc, err, stdout)
	}
	if !out.Exported {
		return "", nil
	}
	if out.Set == nil || len(out.Set.Files) == 0 {
		t.Fatalf("carry export %s: exported a set without files", disc)
	}
	if out.Remaining != 0 {
		t.Fatalf("carry export %s: %d envelopes left behind with the default --max-bytes", disc, out.Remaining)
	}
	var files []string
	for _, f := range out.Set.Files {
		files = append(files, f.Name)
	}
	return disc, files
}

// importDisc runs 'carry import' of disc into recv with zone's keys and
// returns its report and exit code.
func (c *discCarrier) importDisc(t *testing.T, disc, recv, zone string) (*carryImportOut, int) {
	t.Helper()
	cmd := carryCmd("import", disc, "--to", recv, "--keys", c.keys(zone), "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("carry import %s: %v", disc, err)
		}
		code = ee.ExitCode()
	}
	var out carryImportOut
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("carry import %s: exit %d: decode: %v\nstdout:\n%s\nstderr:\n%s", disc, code, err, stdout.Bytes(), stderr.Bytes())
	}
	return &out, code
}

// carry burns a disc from send and imports it into recv; a disc must
// arrive whole. It returns the files carried.
func (c *discCarrier) carry(t *testing.T, send, from, recv, to string) []string {
	t.Helper()
	disc, files := c.export(t, send, from)
	if disc == "" {
		return nil
	}
	rep, code := c.importDisc(t, disc, recv, to)
	if code != 0 || !rep.Complete || len(rep.Missing)+len(rep.Corrupt)+len(rep.Extra) != 0 {
		t.Fatalf("carry import of intact %s: exit %d, %+v", disc, code, rep)
	}
	return files
}

// requestEnvelopes returns the files of disc whose (unverified) header
// says they carry requests.
func requestEnvelopes(t *testing.T, disc string, files []string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(disc, f))
		if err != nil {
			t.Fatal(err)
		}
		h, err := envelope.Inspect(b)
		if err != nil {
			t.Fatalf("%s on %s: %v", f, disc, err)
		}
		if h.Kind == envelope.KindRequests {
			out = append(out, f)
		}
	}
	return out
}

// requestStatuses returns the status of each request, without waiting.
func requestStatuses(t *testing.T, d *deployment, ids []string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, id := range ids {
		st := d.do(t, http.MethodGet, "/v1/requests/"+id, nil)
		if st.code != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", id, st.code)
		}
		n[st.Status]++
	}
	return n
}

// discCarryTest runs both agents of a deployment whose two directions are
// carried on discs. It submits carryRequests writes, waits until all are
// published, burns DISC1 from the DMZ and has damage spoil one of its
// request envelopes (given the disc and the file's name), then imports
// DISC1 into the intranet and hands its report and exit code to check.
// Then it carries discs both ways, each as soon as there is something to
// carry, until every request is final, and checks that each is done and
// took effect exactly once, that a later disc carried request envelopes
// again (the retransmission), and that neither agent quarantined anything.
func discCarryTest(t *testing.T, damage func(disc, name string), check func(rep *carryImportOut, code int, files []string, spoiled string)) {
	d := effectsDeployment(t)
	d.viaFerries(t, "1s")
	rewire(t, filepath.Join(d.dir, "dmz", "dmz.yaml"), "max_requests: 256\n", "max_requests: 2\n")
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	c := newDiscCarrier(t, d)

	ids := submitEffects(t, d, carryRequests, 0, nil)
	// Every request "sent": all request envelopes are in the DMZ's send
	// directory, and nothing has crossed yet.
	waitFor(t, 30*time.Second, func() bool { return requestStatuses(t, d, ids)["sent"] == len(ids) })

	disc1, files1 := c.export(t, c.dmzSend(), "dmz")
	if disc1 == "" {
		t.Fatal("carry export of DISC1: nothing to export")
	}
	reqs1 := requestEnvelopes(t, disc1, files1)
	if len(reqs1) < carryRequests/2 {
		t.Fatalf("DISC1 holds %d request envelopes, want at least %d (batch.max_requests 2)", len(reqs1), carryRequests/2)
	}
	spoiled := reqs1[len(reqs1)/2]
	damage(disc1, spoiled)
	rep, code := c.importDisc(t, disc1, c.intranetRecv(), "intranet")
	check(rep, code, files1, spoiled)
	if slices.Contains(envelopeFiles(t, c.intranetRecv()), spoiled) {
		t.Fatalf("carry import handed on the spoiled %s", spoiled)
	}

	// Carry discs both ways until every request is final, as an operator
	// burning a disc whenever an agent has something to send.
	deadline := time.Now().Add(carryWithin)
	var later []string // request envelopes carried after DISC1
	discs := 1
	for {
		st := requestStatuses(t, d, ids)
		if st["done"]+st["rejected"]+st["failed"]+st["expired"] == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s and %d discs, requests are %v; request envelopes carried after DISC1: %d",
				carryWithin, discs, st, len(later))
		}
		if len(envelopeFiles(t, c.dmzSend())) == 0 && len(envelopeFiles(t, c.intranetSend())) == 0 {
			time.Sleep(20 * time.Millisecond) // nothing to burn yet
			continue
		}
		if files := c.carry(t, c.intranetSend(), "intranet", c.dmzRecv(), "dmz"); files != nil {
			discs++
		}
		disc, files := c.export(t, c.dmzSend(), "dmz")
		if disc == "" {
			continue
		}
		discs++
		later = append(later, requestEnvelopes(t, disc, files)...)
		rep, code := c.importDisc(t, disc, c.intranetRecv(), "intranet")
		if code != 0 || !rep.Complete || len(rep.Missing)+len(rep.Corrupt)+len(rep.Extra) != 0 {
			t.Fatalf("carry import of intact %s: exit %d, %+v", disc, code, rep)
		}
	}

	checkEffects(t, d, ids)
	// The spoiled envelope's requests are done, so its requests crossed
	// on a later disc: the DMZ published them again. Whether as the same
	// envelope or a new one of the same requests, a later disc carried
	// request envelopes, though no request was submitted after DISC1.
	if len(later) == 0 {
		t.Fatalf("no request envelope crossed after DISC1, yet the requests of the spoiled %s are done", spoiled)
	}
	t.Logf("%d discs; DISC1 carried %d request envelopes, later discs %d (the spoiled one again: %v)",
		discs, len(reqs1), len(later), slices.Contains(later, spoiled))
	// Nothing damaged reached either agent, and nothing carried again
	// was taken for a replay.
	for _, zone := range []string{"intranet", "dmz"} {
		if q := quarantined(t, filepath.Join(d.dir, zone, "state", "quarantine")); len(q) != 0 {
			t.Errorf("the %s agent quarantined %v", zone, q)
		}
	}
	dz.stop(t)
	in.stop(t)
}

// TestDiscCarry_lostFileRetransmitted carries both directions on discs and
// loses one request envelope from the first disc: the import reports
// exactly that file missing (exit 3) and imports the others, and the DMZ's
// retransmission, carried on a later disc, gets every request done, each
// taking effect exactly once.
func TestDiscCarry_lostFileRetransmitted(t *testing.T) {
	discCarryTest(t,
		func(disc, name string) {
			if err := os.Remove(filepath.Join(disc, name)); err != nil {
				t.Fatal(err)
			}
		},
		func(rep *carryImportOut, code int, files []string, lost string) {
			t.Helper()
			if code != 3 {
				t.Fatalf("carry import of DISC1 without %s: exit %d, want 3 (incomplete); %+v", lost, code, rep)
			}
			if rep.Complete || !slices.Equal(rep.Missing, []string{lost}) ||
				len(rep.Corrupt)+len(rep.Extra)+len(rep.Skipped) != 0 {
				t.Fatalf("carry import of DISC1 without %s: %+v, want only that file missing", lost, rep)
			}
			want := slices.DeleteFunc(slices.Clone(files), func(f string) bool { return f == lost })
			if got := slices.Sorted(slices.Values(rep.Imported)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Fatalf("carry import of DISC1 imported %v, want the other %d files %v", got, len(want), want)
			}
		})
}

// TestDiscCarry_tamperedDisc flips a byte of one request envelope on the
// first disc: the import reports exactly that file corrupt (exit 3) and
// does not hand it on, and retransmission fills the gap as for a lost
// file.
func TestDiscCarry_tamperedDisc(t *testing.T) {
	discCarryTest(t,
		func(disc, name string) {
			p := filepath.Join(disc, name)
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		func(rep *carryImportOut, code int, files []string, bad string) {
			t.Helper()
			if code != 3 {
				t.Fatalf("carry import of DISC1 with %s tampered: exit %d, want 3 (incomplete); %+v", bad, code, rep)
			}
			if rep.Complete || len(rep.Corrupt) != 1 || rep.Corrupt[0].Name != bad || rep.Corrupt[0].Reason == "" ||
				len(rep.Missing)+len(rep.Extra)+len(rep.Skipped) != 0 {
				t.Fatalf("carry import of DISC1 with %s tampered: %+v, want only that file corrupt, with a reason", bad, rep)
			}
			if slices.Contains(rep.Imported, bad) || len(rep.Imported) != len(files)-1 {
				t.Fatalf("carry import of DISC1 with %s tampered imported %v, want the other %d files", bad, rep.Imported, len(files)-1)
			}
		})
}

// quarantined lists the files in a quarantine directory, which may not
// exist yet.
func quarantined(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}
