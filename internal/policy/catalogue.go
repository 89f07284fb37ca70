package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Catalogue is what the intranet tells the DMZ about its policy: the
// operations, their parameter rules, subject bindings, limits and
// approvals, and the clients, but no statement, table, column or mask.
// Its JSON form is specified in docs/policy.md ("The catalogue").
type Catalogue struct {
	Version    int                  `json:"version"`
	Timezone   string               `json:"timezone"`
	Clients    []CatalogueClient    `json:"clients"`
	Operations []CatalogueOperation `json:"operations"`
}

// CatalogueClient is a client of the policy.
type CatalogueClient struct {
	Name           string `json:"name"`
	AssertsSubject bool   `json:"asserts_subject"`
}

// CatalogueOperation is one operation, without its statement.
type CatalogueOperation struct {
	Name        string             `json:"name"`
	Description string             `json:"description,omitempty"`
	Mode        Mode               `json:"mode"`
	Subject     string             `json:"subject,omitempty"`
	MaxRows     int                `json:"max_rows,omitempty"` // read operations
	Limits      *CatalogueLimits   `json:"limits,omitempty"`
	Approval    *CatalogueApproval `json:"approval,omitempty"`
	Params      []CatalogueParam   `json:"params"`
}

// CatalogueLimits are rate limits written N/duration; "" is no limit.
type CatalogueLimits struct {
	PerSubject string `json:"per_subject,omitempty"`
	PerClient  string `json:"per_client,omitempty"`
}

// CatalogueApproval says a write is held for approval for at most Within
// (a Go duration such as "72h").
type CatalogueApproval struct {
	Within string `json:"within"`
}

// CatalogueParam is one parameter's rules, as the policy writes them.
type CatalogueParam struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required"`
	MaxLen      int    `json:"max_len,omitempty"`
	// Pattern is the pattern as the policy writes it; it is anchored as
	// ^(?:…)$ when the catalogue is parsed.
	Pattern string `json:"pattern,omitempty"`
	// Min and Max are a number for an int, a date bound string
	// ("2024-01-01", "today-30d") for a date or date_range.
	Min     json.RawMessage `json:"min,omitempty"`
	Max     json.RawMessage `json:"max,omitempty"`
	MaxDays int             `json:"max_days,omitempty"`
	Values  []string        `json:"values,omitempty"`
	Example json.RawMessage `json:"example,omitempty"`
}

// catalogueFile names a parsed catalogue in errors.
const catalogueFile = "catalogue"

// Catalogue returns the policy's catalogue.
func (p *Policy) Catalogue() *Catalogue {
	c := &Catalogue{Version: p.Version, Timezone: p.Timezone, Clients: []CatalogueClient{}, Operations: []CatalogueOperation{}}
	for _, cl := range p.Clients {
		c.Clients = append(c.Clients, CatalogueClient(cl))
	}
	for _, op := range p.Operations {
		co := CatalogueOperation{Name: op.Name, Description: op.Description, Mode: op.Mode, Subject: op.Subject, Params: []CatalogueParam{}}
		if op.Mode == ModeRead {
			co.MaxRows = op.MaxRows
		}
		if !op.Limits.PerSubject.IsZero() || !op.Limits.PerClient.IsZero() {
			co.Limits = &CatalogueLimits{PerSubject: op.Limits.PerSubject.String(), PerClient: op.Limits.PerClient.String()}
		}
		if op.Approval != nil {
			co.Approval = &CatalogueApproval{Within: shortDuration(op.Approval.Within)}
		}
		for _, pa := range op.Params {
			cp := CatalogueParam{
				Name: pa.Name, Type: pa.Type, Description: pa.Description, Required: pa.Required,
				MaxLen: pa.MaxLen, Pattern: pa.pattern, MaxDays: pa.MaxDays, Values: pa.Values, Example: pa.Example,
			}
			switch pa.Type {
			case TypeInt:
				if pa.Min != nil {
					cp.Min = strconv.AppendInt(nil, *pa.Min, 10)
				}
				if pa.Max != nil {
					cp.Max = strconv.AppendInt(nil, *pa.Max, 10)
				}
			case TypeDate, TypeDateRange:
				if pa.DateMin != "" {
					cp.Min, _ = json.Marshal(pa.DateMin)
				}
				if pa.DateMax != "" {
					cp.Max, _ = json.Marshal(pa.DateMax)
				}
			}
			co.Params = append(co.Params, cp)
		}
		c.Operations = append(c.Operations, co)
	}
	return c
}

// ParseCatalogue reads a catalogue's JSON strictly (unknown fields,
// trailing data and invalid rules are errors) and returns a Policy whose
// operations have no statement and no table declarations, but on which
// Evaluate decides every request as the catalogue's source policy does.
// Args holds one value per parameter in declaration order (a date_range p
// as p_from and p_to), named as in the source statement. Validation
// errors are *config.Error values naming the field, joined.
func ParseCatalogue(data []byte) (*Policy, error) {
	var c Catalogue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse catalogue: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse catalogue: data after the catalogue object")
	}
	l := &loader{file: catalogueFile}
	if c.Version != Version {
		l.fail([]string{"version"}, "must be %d", Version)
	}
	p := &Policy{Version: c.Version, byName: map[string]*Operation{}, clients: map[string]Client{}}
	p.Timezone, p.loc = l.timezone(&c.Timezone)
	l.loc = p.loc
	raw := make([]rawClient, len(c.Clients))
	for i, cl := range c.Clients {
		raw[i] = rawClient(cl)
	}
	l.clients(p, raw)
	for i := range c.Operations {
		path := []string{"operations", strconv.Itoa(i)}
		op := l.catalogueOperation(path, &c.Operations[i])
		l.add(p, path, op)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return p, nil
}

// catalogueOperation validates one catalogue operation with the loader's
// rules; it returns nil if it has errors.
func (l *loader) catalogueOperation(path []string, co *CatalogueOperation) *Operation {
	nerr := len(l.errs)
	at := func(k ...string) []string { return append(slices.Clone(path), k...) }
	r := &rawOperation{Name: co.Name, Description: co.Description, Mode: string(co.Mode)}
	if co.MaxRows != 0 {
		r.MaxRows = &co.MaxRows
	}
	op := &Operation{Name: r.Name, Description: r.Description, Mode: Mode(r.Mode), byName: map[string]*Param{}}
	l.header(op, r, at)

	var declared []string
	for _, cp := range co.Params {
		p := at("params", cp.Name)
		if slices.Contains(declared, cp.Name) {
			l.fail(p, "duplicate parameter %q", cp.Name)
			continue
		}
		declared = append(declared, cp.Name)
		required := cp.Required
		rp := rawParam{Type: cp.Type, Description: cp.Description, Required: &required, Values: cp.Values}
		if cp.MaxLen != 0 {
			rp.MaxLen = &cp.MaxLen
		}
		if cp.Pattern != "" {
			rp.Pattern = &cp.Pattern
		}
		if cp.MaxDays != 0 {
			rp.MaxDays = &cp.MaxDays
		}
		rp.Min, rp.Max, rp.Example = jsonNode(cp.Min), jsonNode(cp.Max), jsonNode(cp.Example)
		pa := l.param(p, 0, cp.Name, &rp)
		if pa == nil {
			continue
		}
		pa.index = len(op.Params)
		op.Params = append(op.Params, pa)
		op.byName[pa.Name] = pa
		for half, n := range placeholderNames(pa) {
			sl := slot{param: pa.index}
			if pa.Type == TypeDateRange {
				sl.half = half + 1
			}
			op.Placeholders = append(op.Placeholders, n)
			op.slots = append(op.slots, sl)
		}
	}
	if co.Subject != "" {
		op.Subject = co.Subject
		l.subject(op, declared, at("subject"))
	}
	if co.Limits != nil {
		r.Limits = &rawLimits{}
		if co.Limits.PerSubject != "" {
			r.Limits.PerSubject = &co.Limits.PerSubject
		}
		if co.Limits.PerClient != "" {
			r.Limits.PerClient = &co.Limits.PerClient
		}
	}
	if co.Approval != nil {
		r.Approval = &rawApproval{Within: &co.Approval.Within}
	}
	l.limits(op, r, at)
	if len(l.errs) > nerr {
		return nil
	}
	return op
}

// jsonNode turns a JSON scalar (or an object of strings, for a date
// range's example) into the YAML node the loader reads; anything else
// becomes a node the loader refuses. Empty input is an absent node.
func jsonNode(raw json.RawMessage) yaml.Node {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return yaml.Node{}
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
		}
	case '{':
		var m map[string]string
		dec := json.NewDecoder(bytes.NewReader(raw))
		if dec.Decode(&m) == nil {
			n := yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			// Keep the members in a fixed order: from, to, then the rest.
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				if d := rangeKeyOrder(a) - rangeKeyOrder(b); d != 0 {
					return d
				}
				return strings.Compare(a, b)
			})
			for _, k := range keys {
				n.Content = append(n.Content,
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k},
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: m[k]})
			}
			return n
		}
	default:
		if json.Valid(raw) {
			if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				return yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: string(raw)}
			}
		}
	}
	return yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
}

func rangeKeyOrder(k string) int {
	switch k {
	case "from":
		return 0
	case "to":
		return 1
	}
	return 2
}
