package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
)

func main() {
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil).WithAttrs(
		[]slog.Attr{slog.String("component", "vmlet-agent")}))
	ctx := logr.NewContext(context.Background(), log)

	g := &guest{}
	pid1 := os.Getpid() == 1
	if pid1 {
		initSystem(ctx)
		watchPowerButtons(ctx, g)
	}
	err := run(ctx, g)
	if err != nil {
		log.Error(err, "Agent stopped")
	}
	if !pid1 {
		os.Exit(1)
	}
	// PID 1 must not exit, or the kernel panics: stay init and keep
	// reaping orphans.
	select {}
}

// run reads the channel from the kernel command line and serves g there.
func run(ctx context.Context, g *guest) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading kernel command line: %w", err)
	}
	ch, err := parseCmdline(string(cmdline))
	if errors.Is(err, errNoChannel) {
		logr.FromContextOrDiscard(ctx).Info("No agent channel on the kernel command line, acting as init only")
		return nil
	}
	if err != nil {
		return err
	}
	return serveChannel(ctx, ch, g)
}
