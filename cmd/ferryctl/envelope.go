package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
)

// maxInspectSize caps how much of a file envelope commands read.
const maxInspectSize = envelope.DefaultMaxSize

func newEnvelopeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "envelope",
		Short: "Inspect and verify envelope files",
	}
	cmd.AddCommand(newEnvelopeInspectCmd(g), newEnvelopeVerifyCmd(g))
	return cmd
}

type envelopeInspectOptions struct {
	JSON bool
}

func (o *envelopeInspectOptions) Add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newEnvelopeInspectCmd(g *globals) *cobra.Command {
	var opts envelopeInspectOptions
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print an envelope's clear header without verifying it",
		Long: `Print an envelope's clear header. Nothing is verified and no key is needed:
the output is what the file claims, not what is true. Use 'ferryctl envelope
verify' to check the signature.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnvelopeInspect(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func readEnvelopeFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInspectSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInspectSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxInspectSize)
	}
	return data, nil
}

type headerJSON struct {
	ID            string    `json:"id"`
	Kind          string    `json:"kind"`
	From          string    `json:"from"`
	FromKey       string    `json:"from_key"`
	To            string    `json:"to"`
	ToKey         string    `json:"to_key"`
	Channel       string    `json:"channel"`
	Seq           uint64    `json:"seq"`
	Prev          string    `json:"prev"`
	Created       time.Time `json:"created"`
	Expires       time.Time `json:"expires"`
	PayloadSHA256 string    `json:"payload_sha256"`
	PayloadSize   int64     `json:"payload_size"`
	Verified      bool      `json:"verified"`
	HeaderSHA256  string    `json:"header_sha256,omitempty"`
}

func toJSON(h *envelope.Header, verified bool) headerJSON {
	return headerJSON{
		ID: h.ID, Kind: string(h.Kind), From: h.From, FromKey: h.FromKey, To: h.To, ToKey: h.ToKey,
		Channel: h.Channel, Seq: h.Seq, Prev: hex.EncodeToString(h.Prev[:]),
		Created: h.Created.UTC(), Expires: h.Expires.UTC(),
		PayloadSHA256: hex.EncodeToString(h.PayloadSHA256[:]), PayloadSize: h.PayloadSize,
		Verified: verified,
	}
}

func printHeader(out io.Writer, h headerJSON, asJSON bool) error {
	if asJSON {
		return writeJSON(out, h)
	}
	rows := [][2]string{
		{"id", h.ID}, {"kind", h.Kind},
		{"from", h.From + " (key " + h.FromKey + ")"}, {"to", h.To + " (age key " + h.ToKey + ")"},
		{"channel", h.Channel}, {"seq", fmt.Sprint(h.Seq)}, {"prev", h.Prev},
		{"created", h.Created.Format(time.RFC3339)}, {"expires", h.Expires.Format(time.RFC3339)},
		{"payload", fmt.Sprintf("sha256:%s, %d bytes", h.PayloadSHA256, h.PayloadSize)},
	}
	if h.HeaderSHA256 != "" {
		rows = append(rows, [2]string{"header", "sha256:" + h.HeaderSHA256})
	}
	for _, r := range rows {
		fmt.Fprintf(out, "%-8s %s\n", r[0], r[1])
	}
	return nil
}

func runEnvelopeInspect(opts envelopeInspectOptions, path string, out io.Writer) error {
	data, err := readEnvelopeFile(path)
	if err != nil {
		return err
	}
	h, err := envelope.Inspect(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !opts.JSON {
		fmt.Fprintln(out, "# unverified: this is what the file claims")
	}
	return printHeader(out, toJSON(h, false), opts.JSON)
}

type envelopeVerifyOptions struct {
	PubKey string
	JSON   bool
}

func (o *envelopeVerifyOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.PubKey, "pubkey", "", "sender's signing `file` (sign.pub or peer-sign.pub)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newEnvelopeVerifyCmd(g *globals) *cobra.Command {
	var opts envelopeVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify --pubkey SIGN.PUB FILE",
		Short: "Verify an envelope's signature, header and payload hash",
		Long: `Verify an envelope's signature against the sender's public signing key, the
syntax of its header and the hash and size of its encrypted payload. Only the
public key is needed; the payload is not decrypted and expiry is not checked,
so auditors can verify old envelopes. Exits 1 if verification fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnvelopeVerify(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runEnvelopeVerify(opts envelopeVerifyOptions, path string, out io.Writer) error {
	if opts.PubKey == "" {
		return &usageError{fmt.Errorf("--pubkey is required")}
	}
	v, err := keys.LoadVerifier(opts.PubKey)
	if err != nil {
		return err
	}
	data, err := readEnvelopeFile(path)
	if err != nil {
		return err
	}
	h, hh, err := envelope.Verify(data, v)
	if err != nil {
		return withHint(fmt.Errorf("%s: verification failed (%s): %w", path, envelope.Reason(err), err),
			"check that --pubkey is the sending zone's sign.pub")
	}
	j := toJSON(h, true)
	j.HeaderSHA256 = hex.EncodeToString(hh[:])
	if !opts.JSON {
		fmt.Fprintf(out, "# verified: signed by %s+%s\n", v.Name(), keys.KeyID(v.KeyHash()))
	}
	return printHeader(out, j, opts.JSON)
}
