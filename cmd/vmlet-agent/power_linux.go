package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
)

// powerButtonName is the input device name of the ACPI power button, which
// QEMU's system_powerdown presses.
const powerButtonName = "Power Button"

// watchPowerButtons powers the guest off cleanly, as the shutdown request
// does, when an ACPI power button is pressed. The initramfs has no acpid,
// so without this a guest would ignore the host's ACPI power-down. A guest
// without the button (or without the evdev module) logs it and carries on.
func watchPowerButtons(ctx context.Context, g *guest) {
	log := logr.FromContextOrDiscard(ctx)
	devs := findInputDevices(powerButtonName)
	if len(devs) == 0 {
		log.Info("No ACPI power button, so ACPI power-down will not stop this guest")
		return
	}
	for _, dev := range devs {
		go watchPowerButton(ctx, g, dev)
	}
}

// watchPowerButton reads input events from dev until a power key press,
// then shuts the guest down and powers it off.
func watchPowerButton(ctx context.Context, g *guest, dev string) {
	log := logr.FromContextOrDiscard(ctx).WithValues("device", dev)
	f, err := os.Open(dev)
	if err != nil {
		log.Error(err, "Opening the power button")
		return
	}
	defer f.Close()
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(f, ev); err != nil {
			log.Error(err, "Reading the power button")
			return
		}
		if isPowerPress(ev) {
			log.Info("Power button pressed, shutting down")
			g.Shutdown(ctx)
			g.PowerOff()
		}
	}
}

// findInputDevices returns the /dev/input/eventN devices whose name is
// name.
func findInputDevices(name string) []string {
	paths, _ := filepath.Glob("/sys/class/input/event*/device/name")
	var devs []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(data)) != name {
			continue
		}
		event := filepath.Base(filepath.Dir(filepath.Dir(p)))
		devs = append(devs, filepath.Join("/dev/input", event))
	}
	return devs
}
