package dmz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/queue"
)

// Where the operations the DMZ checks against came from, as GET
// /v1/operations names it.
const (
	// SourceCatalogue: the catalogue the intranet sent last.
	SourceCatalogue = "catalogue"
	// SourceLocalPolicy: the config's policy file, a bootstrap until the
	// first catalogue arrives.
	SourceLocalPolicy = "local-policy"
)

// maxLoggedError bounds the error text logged for a refused catalogue: a
// catalogue with many problems joins one error per problem.
const maxLoggedError = 2048

// checker is the policy the DMZ checks requests against, with where it
// came from. It is immutable once built; the agent swaps the whole value.
type checker struct {
	pol *policy.Policy
	// ops is the catalogue's operations in its order, as GET
	// /v1/operations lists them.
	ops      []policy.CatalogueOperation
	source   string
	seq      uint64    // SourceCatalogue: the results envelope's sequence number
	received time.Time // SourceCatalogue: when the spool stored it
}

// catalogueChecker parses a catalogue's JSON (strictly, see
// policy.ParseCatalogue) into a checker.
func catalogueChecker(data []byte, seq uint64, received time.Time) (*checker, error) {
	pol, err := policy.ParseCatalogue(data)
	if err != nil {
		return nil, err
	}
	// ParseCatalogue has read the same bytes strictly, so every field is
	// known to policy.Catalogue and nothing is lost here.
	var c policy.Catalogue
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse catalogue: %w", err)
	}
	return &checker{pol: pol, ops: c.Operations, source: SourceCatalogue, seq: seq, received: received}, nil
}

// localChecker makes a checker of the config's policy file.
func localChecker(pol *policy.Policy) *checker {
	return &checker{pol: pol, ops: pol.Catalogue().Operations, source: SourceLocalPolicy}
}

// initialChecker returns what the agent checks requests against at start:
// the catalogue stored in the spool, else the config's policy file, else
// nil (every request is refused until a catalogue arrives). A stored
// catalogue that no longer parses is logged and passed over.
func initialChecker(ctx context.Context, cfg *Config, spool *queue.Spool, log *slog.Logger) (*checker, error) {
	stored, err := spool.Catalogue(ctx)
	switch {
	case err == nil:
		ck, perr := catalogueChecker(stored.Data, stored.Seq, stored.Received)
		if perr == nil {
			log.Info("operation catalogue loaded from the spool", slog.Uint64(logSeq, stored.Seq),
				slog.Int(logOperations, len(ck.ops)))
			if cfg.Policy != "" {
				log.Info("local policy file not used: the intranet's catalogue replaces it", slog.String(logFile, cfg.Policy))
			}
			return ck, nil
		}
		log.Error("stored operation catalogue does not parse; ignoring it", slog.Uint64(logSeq, stored.Seq),
			slog.String(logError, truncate(perr.Error())))
	case !errors.Is(err, queue.ErrNoCatalogue):
		return nil, err
	}
	if cfg.Policy == "" {
		log.Warn("no operation catalogue from the intranet yet and no local policy: requests are refused until one arrives")
		return nil, nil
	}
	pol, err := policy.Load(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	log.Info("checking requests against the local policy until the intranet's catalogue arrives", slog.String(logFile, cfg.Policy))
	return localChecker(pol), nil
}

// current returns the checker in force, or nil before any.
// known reports whether op is one of the catalogue's operations.
func (ck *checker) known(op string) bool {
	for i := range ck.ops {
		if ck.ops[i].Name == op {
			return true
		}
	}
	return false
}

func (a *Agent) current() *checker { return a.checker.Load() }

// install puts ck in force and logs it.
func (a *Agent) install(ck *checker) {
	a.checker.Store(ck)
	a.log.Info("operation catalogue in force", slog.Uint64(logSeq, ck.seq), slog.Int(logOperations, len(ck.ops)))
	a.warnClientOps(ck)
}

// warnClientOps logs each operation a client is limited to that ck does
// not list: that client cannot submit it until a catalogue lists it.
func (a *Agent) warnClientOps(ck *checker) {
	if ck == nil {
		return
	}
	for _, cl := range *a.clients.Load() {
		for _, op := range sortedOps(cl.ops) {
			if _, ok := ck.pol.Operation(op); !ok {
				a.log.Warn("a client's operation is not in the catalogue", slog.String(logClient, cl.name),
					slog.String(logOp, op), slog.String(logSource, ck.source))
			}
		}
	}
}

// sortedOps returns the operations of a client's set in order.
func sortedOps(ops map[string]bool) []string {
	out := make([]string, 0, len(ops))
	for op := range ops {
		out = append(out, op)
	}
	slices.Sort(out)
	return out
}

// truncate bounds an error text for the log.
func truncate(s string) string {
	if len(s) <= maxLoggedError {
		return s
	}
	n := maxLoggedError
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
