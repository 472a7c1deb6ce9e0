package qemu

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
)

// Accelerators that Options.Accel may name.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelHVF  = "hvf"
	AccelTCG  = "tcg"
)

// defaultBinary returns the QEMU system emulator for the host's
// architecture.
func defaultBinary() string {
	if runtime.GOARCH == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// machineFamily returns the alias whose target is the pinned machine type:
// "pc" on x86 (i440FX), "virt" on arm64.
func machineFamily() string {
	if runtime.GOARCH == "arm64" {
		return "virt"
	}
	return "pc"
}

var versionPattern = regexp.MustCompile(`version (\d+\.\d+\.\d+)`)

// probeVersion returns the version QEMU prints, such as "7.2.22".
func probeVersion(ctx context.Context, binary string) (string, error) {
	out, err := exec.CommandContext(ctx, binary, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("running %q -version: %w", binary, err)
	}
	match := versionPattern.FindSubmatch(out)
	if match == nil {
		return "", fmt.Errorf("no version in the output of %q -version: %q", binary, firstLine(out))
	}
	return string(match[1]), nil
}

// probeMachines returns the machine types the binary supports and the
// versioned type that family is an alias of.
func probeMachines(ctx context.Context, binary, family string) (map[string]bool, string, error) {
	out, err := exec.CommandContext(ctx, binary, "-machine", "help").Output()
	if err != nil {
		return nil, "", fmt.Errorf("running %q -machine help: %w", binary, err)
	}
	types, pinned := parseMachines(out, family)
	if pinned == "" {
		return nil, "", fmt.Errorf("%q -machine help lists no versioned type behind %q", binary, family)
	}
	return types, pinned, nil
}

// parseMachines reads the output of -machine help: one type a line, the
// name first; an alias line ends "(alias of TYPE)".
func parseMachines(out []byte, family string) (map[string]bool, string) {
	types := make(map[string]bool)
	var pinned string
	scanner := bufio.NewScanner(bytes.NewReader(out))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 || fields[0] == "Supported" {
			continue
		}
		types[fields[0]] = true
		target, ok := aliasTarget(scanner.Text())
		if ok && fields[0] == family {
			pinned = target
		}
	}
	return types, pinned
}

func aliasTarget(line string) (string, bool) {
	const marker = "(alias of "
	i := strings.LastIndex(line, marker)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(marker):]
	end := strings.IndexByte(rest, ')')
	if end < 0 {
		return "", false
	}
	return rest[:end], true
}

// chooseAccel resolves "auto": HVF on macOS, KVM where the CPU shows
// hardware virtualization and /dev/kvm opens, TCG otherwise. KVM without
// the vmx or svm flag is nested virtualization, which boots far slower than
// TCG.
func chooseAccel(accel string) (string, error) {
	switch accel {
	case "", AccelAuto:
		return autoAccel(), nil
	case AccelKVM, AccelHVF, AccelTCG:
		return accel, nil
	}
	return "", fmt.Errorf("invalid accelerator %q (use auto, kvm, hvf or tcg)", accel)
}

func autoAccel() string {
	if runtime.GOOS == "darwin" {
		return AccelHVF
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !hasVirtFlag(cpuinfo) || !kvmOpens() {
		return AccelTCG
	}
	return AccelKVM
}

// hasVirtFlag reports whether a flags line of /proc/cpuinfo names vmx or svm.
func hasVirtFlag(cpuinfo []byte) bool {
	scanner := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, flag := range strings.Fields(value) {
			if flag == "vmx" || flag == "svm" {
				return true
			}
		}
	}
	return false
}

func kvmOpens() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// accelArgs returns the -accel and -cpu arguments for accel.
func accelArgs(accel string) []string {
	if accel == AccelTCG {
		return []string{"-accel", "tcg", "-cpu", "max"}
	}
	return []string{"-accel", accel, "-cpu", "host"}
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}
