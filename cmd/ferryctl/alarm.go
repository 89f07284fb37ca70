package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/alarm"
)

func newAlarmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alarm",
		Short: "Set up and try the alarm webhook",
	}
	cmd.AddCommand(newAlarmSecretCmd(g), newAlarmTestCmd(g))
	return cmd
}

func newAlarmSecretCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "secret FILE",
		Short: "Write a new webhook signing secret",
		Long: `Write a new secret for signing the alarm webhook's bodies to FILE (mode
0600; an existing file is never replaced): one line whsec_<base64> of 32
random bytes, the Standard Webhooks format. Name it in the agent's config
as alarms.webhook.secret_file, and give the same secret to the receiver,
which verifies each body with it (docs/alarms.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := alarm.GenerateSecret(args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "wrote a new webhook secret to %s (0600): name it in alarms.webhook.secret_file, and give it to the receiver\n", args[0])
			return err
		},
	}
}

func newAlarmTestCmd(g *globals) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "test --config AGENT.yaml",
		Short: "Send a signed test event to the agent's alarm webhook",
		Long: `Send one signed test event (alarm "test", state raised) to the webhook of
the agent's config, as the agent would: with its secret, timeout and
retries. It prints whether the receiver took it (a 2xx answer) and exits 1
if not. It raises nothing in the agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAlarmTest(cmd.Context(), cfgPath, g.stdout)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the agent's config `file`")
	return cmd
}

func runAlarmTest(ctx context.Context, cfgPath string, out io.Writer) error {
	if cfgPath == "" {
		return &usageError{errors.New("--config is required: the agent's config file")}
	}
	ac, err := loadAgentConfig(cfgPath)
	if err != nil {
		return err
	}
	if ac.Alarms.Webhook.URL == "" {
		return withHint(fmt.Errorf("%s has no alarms.webhook.url", cfgPath), "set alarms.webhook (docs/alarms.md)")
	}
	wh, err := alarm.NewWebhook(ac.Alarms.Webhook, nil)
	if err != nil {
		return err
	}
	ev := alarm.TestEvent(ac.Zone, time.Now())
	if err := wh.Send(ctx, ev); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "test event %s delivered: the receiver answered 2xx\n", ev.ID)
	return err
}
