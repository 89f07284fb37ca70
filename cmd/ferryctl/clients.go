package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/dmz"
)

type clientsOptions struct {
	Config     string
	Operations []string
	TokenFile  string
	JSON       bool
	// Rate and Burst are the client's token bucket (0: none); TLSName
	// binds it to a client certificate.
	Rate    float64
	Burst   int
	TLSName string
	// The callback subcommand's flags.
	CallbackURL     string
	CallbackSecret  string
	CallbackPrivate bool
	CallbackRemove  bool
}

func newClientsCmd(g *globals) *cobra.Command {
	var opts clientsOptions
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "Add, rotate, remove and list the DMZ API's clients and their tokens",
		Long: `Manage the clients of the DMZ agent's API in its config file: the
citizen-facing app backends, the portal, each with its bearer token.

The config holds only each token's SHA-256 (token_sha256). add and rotate
make a new random token (fy_ and 43 characters) and print it once, or write
it to --token-file (0600, never replacing a file): give it to the client's
team over a channel you trust. ferryctl cannot show it again. Each change
is checked by loading the changed config as the agent would, written in
place of the file (its mode kept, its comments too), and recorded in the
zone's admin journal (who, which client; never the token). The agent puts
it in force at its next reload ('systemctl reload ferry-dmz-agent'): a
rotated client's old token then stops working at once.`,
	}
	cmd.PersistentFlags().StringVar(&opts.Config, "config", "", "the DMZ agent's config `file`")
	add := &cobra.Command{
		Use:   "add --config FILE [--operations OP,...] [--rate N [--burst N]] [--tls-name NAME] [--token-file FILE] NAME",
		Short: "Add a client with a new token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClientsChange(g.stdout, opts, "add", args[0])
		},
	}
	add.Flags().StringSliceVar(&opts.Operations, "operations", nil, "the only operations the client may submit (default: every operation of the catalogue)")
	add.Flags().StringVar(&opts.TokenFile, "token-file", "", "write the token to this new `file` (0600) instead of printing it")
	add.Flags().Float64Var(&opts.Rate, "rate", 0, "the client's own rate limit, `requests` per second (default: none)")
	add.Flags().IntVar(&opts.Burst, "burst", 0, "the client's burst, in requests (default: twice --rate)")
	add.Flags().StringVar(&opts.TLSName, "tls-name", "", "bind the client to a TLS client certificate with this DNS `name` (needs tls.client_ca)")
	rotate := &cobra.Command{
		Use:   "rotate --config FILE [--token-file FILE] NAME",
		Short: "Give a client a new token; the old one stops working at the agent's next reload",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClientsChange(g.stdout, opts, "rotate", args[0])
		},
	}
	rotate.Flags().StringVar(&opts.TokenFile, "token-file", "", "write the token to this new `file` (0600) instead of printing it")
	remove := &cobra.Command{
		Use:   "remove --config FILE NAME",
		Short: "Remove a client; its token stops working at the agent's next reload",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClientsChange(g.stdout, opts, "remove", args[0])
		},
	}
	list := &cobra.Command{
		Use:   "list --config FILE [--json]",
		Short: "List the clients, their operations and the start of their token's hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClientsList(g.stdout, opts)
		},
	}
	list.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cb := &cobra.Command{
		Use:   "callback --config FILE (--url URL [--secret-file FILE] [--allow-private] | --remove) NAME",
		Short: "Have a client's results POSTed to its callback URL, signed (docs/api.md, Result callbacks)",
		Long: `Set or remove the URL the DMZ agent POSTs client NAME's results to, each
signed with a Standard Webhooks secret. Without --secret-file the secret
is KEYS/NAME-callback.secret; a file that does not exist is created with
a new secret (0600), to be given to the receiver's team over a channel
you trust. --allow-private lets the URL be http:// or reach a private,
loopback or link-local address (a receiver on the platform's own
network); without it the agent refuses to connect to one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClientsCallback(g.stdout, opts, args[0])
		},
	}
	cb.Flags().StringVar(&opts.CallbackURL, "url", "", "the receiver's https:// `URL`")
	cb.Flags().StringVar(&opts.CallbackSecret, "secret-file", "", "the signing secret's `file` (default KEYS/NAME-callback.secret; made if missing)")
	cb.Flags().BoolVar(&opts.CallbackPrivate, "allow-private", false, "allow http:// and private, loopback or link-local addresses")
	cb.Flags().BoolVar(&opts.CallbackRemove, "remove", false, "remove the client's callback")
	cmd.AddCommand(add, rotate, remove, list, cb)
	return cmd
}

// clientJSON is a client as clients list prints it.
type clientJSON struct {
	Name       string   `json:"name"`
	Operations []string `json:"operations"` // empty: every operation of the catalogue
	TokenHash  string   `json:"token_sha256_prefix"`
	// Rate is the client's bucket, nil for none.
	Rate    *dmz.RateConfig `json:"rate,omitempty"`
	TLSName string          `json:"tls_name,omitempty"`
}

func runClientsList(out io.Writer, opts clientsOptions) error {
	if opts.Config == "" {
		return &usageError{errors.New("--config is required: the DMZ agent's config file")}
	}
	cfg, err := dmz.LoadConfig(opts.Config)
	if err != nil {
		return err
	}
	list := []clientJSON{}
	for _, c := range cfg.Clients {
		cj := clientJSON{Name: c.Name, Operations: append([]string{}, c.Operations...), TokenHash: c.TokenSHA256[:12], TLSName: c.TLSName}
		if c.Rate.PerSecond > 0 {
			cj.Rate = &c.Rate
		}
		list = append(list, cj)
	}
	if opts.JSON {
		return writeJSON(out, list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOPERATIONS\tRATE\tCERTIFICATE\tTOKEN SHA-256")
	for _, c := range list {
		ops, rate, cert := "all", "-", "-"
		if len(c.Operations) > 0 {
			ops = strings.Join(c.Operations, ",")
		}
		if c.Rate != nil {
			rate = fmt.Sprintf("%g/s burst %d", c.Rate.PerSecond, c.Rate.Burst)
		}
		if c.TLSName != "" {
			cert = c.TLSName
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s…\n", c.Name, ops, rate, cert, c.TokenHash)
	}
	return tw.Flush()
}

// runClientsChange adds, rotates or removes client name in the config.
func runClientsChange(out io.Writer, opts clientsOptions, action, name string) error {
	if opts.Config == "" {
		return &usageError{errors.New("--config is required: the DMZ agent's config file")}
	}
	cfg, root, clients, idx, err := loadClients(opts.Config, name)
	if err != nil {
		return err
	}
	var token string
	switch action {
	case "add":
		if idx >= 0 {
			return fmt.Errorf("%s: client %q exists; use rotate for a new token", opts.Config, name)
		}
		if token, err = newToken(); err != nil {
			return err
		}
		entry := &yaml.Node{Kind: yaml.MappingNode}
		addPair(entry, "name", &yaml.Node{Kind: yaml.ScalarNode, Value: name})
		addPair(entry, "token_sha256", &yaml.Node{Kind: yaml.ScalarNode, Value: tokenHash(token)})
		if len(opts.Operations) > 0 {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, op := range opts.Operations {
				seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: op})
			}
			addPair(entry, "operations", seq)
		}
		if opts.Rate > 0 {
			burst := opts.Burst
			if burst == 0 {
				burst = max(1, int(2*opts.Rate))
			}
			r := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
			addPair(r, "per_second", &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(opts.Rate, 'f', -1, 64)})
			addPair(r, "burst", &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(burst)})
			addPair(entry, "rate", r)
		} else if opts.Burst != 0 {
			return &usageError{errors.New("--burst needs --rate")}
		}
		if opts.TLSName != "" {
			addPair(entry, "tls_name", &yaml.Node{Kind: yaml.ScalarNode, Value: opts.TLSName})
		}
		clients.Content = append(clients.Content, entry)
	case "rotate", "remove":
		if idx < 0 {
			return fmt.Errorf("%s: no client %q (clients: %s)", opts.Config, name, clientNames(cfg))
		}
		if action == "remove" {
			if len(clients.Content) == 1 {
				return fmt.Errorf("%s: %q is the only client; the agent needs at least one", opts.Config, name)
			}
			clients.Content = slices.Delete(clients.Content, idx, idx+1)
			break
		}
		if token, err = newToken(); err != nil {
			return err
		}
		h := mappingValue(clients.Content[idx], "token_sha256")
		if h == nil {
			return fmt.Errorf("%s: client %q has no token_sha256", opts.Config, name)
		}
		h.Value, h.Style = tokenHash(token), 0
	}
	data, err := encodeYAML(root)
	if err != nil {
		return err
	}
	// The token file first: a name taken stops the change before the
	// config holds a hash whose token nobody has.
	if token != "" && opts.TokenFile != "" {
		if err := writeNewPrivate(opts.TokenFile, []byte(token+"\n")); err != nil {
			return fmt.Errorf("%s unchanged: %w", opts.Config, err)
		}
	}
	if err := replaceConfig(opts.Config, data); err != nil {
		if token != "" && opts.TokenFile != "" {
			os.Remove(opts.TokenFile)
		}
		return err
	}
	if err := journal(cfg.Keys, "clients."+action, "client "+name, 0); err != nil {
		return err
	}
	hint := "reload the DMZ agent to put it in force: systemctl reload ferry-dmz-agent"
	if token == "" {
		_, err := fmt.Fprintf(out, "removed client %q from %s; %s\n", name, opts.Config, hint)
		return err
	}
	if opts.TokenFile != "" {
		_, err := fmt.Fprintf(out, "%s client %q: its new token is in %s (0600); %s\n", verb(action), name, opts.TokenFile, hint)
		return err
	}
	_, err = fmt.Fprintf(out, "%s client %q; its token, shown only this once:\n%s\n%s\n", verb(action), name, token, hint)
	return err
}

// loadClients loads the DMZ config at path as the agent would, and its
// node tree for editing: the clients list and the index of client name
// in it (-1 if there is none).
func loadClients(path, name string) (*dmz.Config, *yaml.Node, *yaml.Node, int, error) {
	cfg, err := dmz.LoadConfig(path)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, nil, nil, 0, fmt.Errorf("%s: cannot edit: %v", path, err)
	}
	clients := mappingValue(root.Content[0], "clients")
	if clients == nil || clients.Kind != yaml.SequenceNode {
		return nil, nil, nil, 0, fmt.Errorf("%s: no clients list to edit", path)
	}
	idx := slices.IndexFunc(clients.Content, func(n *yaml.Node) bool {
		v := mappingValue(n, "name")
		return v != nil && v.Value == name
	})
	return cfg, &root, clients, idx, nil
}

// encodeYAML encodes an edited node tree as the configs are written.
func encodeYAML(root *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// runClientsCallback sets or removes client name's result callback.
func runClientsCallback(out io.Writer, opts clientsOptions, name string) error {
	if opts.Config == "" {
		return &usageError{errors.New("--config is required: the DMZ agent's config file")}
	}
	if (opts.CallbackURL == "") == !opts.CallbackRemove {
		return &usageError{errors.New("give --url URL, or --remove")}
	}
	cfg, root, clients, idx, err := loadClients(opts.Config, name)
	if err != nil {
		return err
	}
	if idx < 0 {
		return fmt.Errorf("%s: no client %q (clients: %s)", opts.Config, name, clientNames(cfg))
	}
	entry := clients.Content[idx]
	for i := 0; i+1 < len(entry.Content); i += 2 {
		if entry.Content[i].Value == "callback" {
			entry.Content = slices.Delete(entry.Content, i, i+2)
			break
		}
	}
	created, secretPath := "", ""
	if !opts.CallbackRemove {
		secret := opts.CallbackSecret
		if secret == "" {
			secret = filepath.Join(cfg.Keys, name+"-callback.secret")
		}
		cb := &yaml.Node{Kind: yaml.MappingNode}
		addPair(cb, "url", &yaml.Node{Kind: yaml.ScalarNode, Value: opts.CallbackURL})
		abs, err := filepath.Abs(secret)
		if err != nil {
			return err
		}
		secretPath = abs
		addPair(cb, "secret_file", &yaml.Node{Kind: yaml.ScalarNode, Value: abs})
		if opts.CallbackPrivate {
			addPair(cb, "allow_private", &yaml.Node{Kind: yaml.ScalarNode, Value: "true", Tag: "!!bool"})
		}
		addPair(entry, "callback", cb)
		if msg, key := (callback.Config{URL: opts.CallbackURL, SecretFile: abs, AllowPrivate: opts.CallbackPrivate}).Check(); msg != "" {
			return fmt.Errorf("%s unchanged: callback %s: %s", opts.Config, key, msg)
		}
		// A new secret, unless the file is there: the receiver's team gets
		// it over a channel you trust, as a token.
		if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
			if err := alarm.GenerateSecret(abs); err != nil {
				return fmt.Errorf("%s unchanged: %w", opts.Config, err)
			}
			created = abs
		}
	}
	data, err := encodeYAML(root)
	if err != nil {
		return err
	}
	if err := replaceConfig(opts.Config, data); err != nil {
		if created != "" {
			os.Remove(created)
		}
		return err
	}
	action := "clients.callback"
	if opts.CallbackRemove {
		action = "clients.callback.remove"
	}
	if err := journal(cfg.Keys, action, "client "+name, 0); err != nil {
		return err
	}
	hint := "reload the DMZ agent to put it in force: systemctl reload ferry-dmz-agent"
	switch {
	case opts.CallbackRemove:
		_, err = fmt.Fprintf(out, "removed client %q's callback from %s; %s\n", name, opts.Config, hint)
	case created != "":
		_, err = fmt.Fprintf(out, "client %q's results go to its callback; a new signing secret is in %s (0600): give it to the receiver's team; %s\n", name, created, hint)
	default:
		_, err = fmt.Fprintf(out, "client %q's results go to its callback, signed with the secret in %s; %s\n", name, secretPath, hint)
	}
	return err
}

func verb(action string) string {
	if action == "add" {
		return "added"
	}
	return "rotated"
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func clientNames(cfg *dmz.Config) string {
	var names []string
	for _, c := range cfg.Clients {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

func addPair(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// replaceConfig checks data by loading it as the DMZ agent would, from a
// temporary file beside path (so relative paths resolve the same), then
// renames it over path with path's mode.
func replaceConfig(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ferryctl-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if _, err := dmz.LoadConfig(tmp.Name()); err != nil {
		return fmt.Errorf("the changed config would not load, %s is unchanged: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// writeNewPrivate writes data to a new file at path with mode 0600.
func writeNewPrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
