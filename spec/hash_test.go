package spec

import (
	"regexp"
	"testing"
)

func mustParse(t *testing.T, data string) *VirtualMachine {
	t.Helper()
	m := Parse("vm.yaml", []byte(data))
	if m.Err != nil {
		t.Fatalf("Parse: %v", m.Err)
	}
	return m.VM
}

func TestHashesIgnoreFormatting(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"comments and blank lines", "# head\n" + edit(t, "  cpus: 2\n", "\n  cpus: 2 # two\n")},
		{"key order", `kind: VirtualMachine
apiVersion: vmlet.dev/v1alpha1
spec:
  stopTimeout: 30s
  kernel: vmlinuz
  memory: 512Mi
  cpus: 2
  desiredState: Running
metadata:
  name: builder
`},
		{"flow style", "{apiVersion: vmlet.dev/v1alpha1, kind: VirtualMachine, metadata: {name: builder},\n" +
			" spec: {desiredState: Running, cpus: 2, memory: 512Mi, kernel: vmlinuz, stopTimeout: 30s}}\n"},
		{"JSON", `{"apiVersion": "vmlet.dev/v1alpha1", "kind": "VirtualMachine", "metadata": {"name": "builder"},
 "spec": {"desiredState": "Running", "cpus": 2, "memory": "512Mi", "kernel": "vmlinuz", "stopTimeout": "30s"}}`},
		{"quoting", edit(t, "memory: 512Mi", `memory: "512Mi"`, "kernel: vmlinuz", "kernel: 'vmlinuz'")},
		{"quantity spelling", edit(t, "512Mi", "0.5Gi")},
		{"quantity as bytes", edit(t, "512Mi", "536870912")},
		{"duration spelling", edit(t, "stopTimeout: 30s", "stopTimeout: 30000ms")},
		{"explicit default network", edit(t, "  kernel: vmlinuz\n", "  kernel: vmlinuz\n  network: none\n")},
		{"default stop timeout", edit(t, "  stopTimeout: 30s\n", "")},
		{"status added", base + "status:\n  phase: Running\n"},
		{"name changed", edit(t, "name: builder", "name: other")},
	}
	want := mustParse(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := mustParse(t, tt.data)
			if got := vm.SpecHash(); got != want.SpecHash() {
				t.Errorf("SpecHash = %s, want %s", got, want.SpecHash())
			}
			if got := vm.MachineHash(); got != want.MachineHash() {
				t.Errorf("MachineHash = %s, want %s", got, want.MachineHash())
			}
		})
	}
}

func TestHashesTrackChanges(t *testing.T) {
	tests := []struct {
		name       string
		edit       []string
		machineToo bool
	}{
		{"desired state", []string{"Running", "Suspended"}, false},
		{"stop timeout", []string{"stopTimeout: 30s", "stopTimeout: 31s"}, false},
		{"ready timeout", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  agent: {port: 5000, readyTimeout: 10s}\n"}, true},
		{"cpus", []string{"cpus: 2", "cpus: 3"}, true},
		{"memory", []string{"512Mi", "1Gi"}, true},
		{"kernel", []string{"kernel: vmlinuz", "kernel: vmlinuz2"}, true},
		{"cmdline", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  cmdline: quiet\n"}, true},
		{"network", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  network: nat\n"}, true},
		{"disk", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks: [{path: a.img}]\n"}, true},
	}
	old := mustParse(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := mustParse(t, edit(t, tt.edit...))
			if vm.SpecHash() == old.SpecHash() {
				t.Error("SpecHash did not change")
			}
			if changed := vm.MachineHash() != old.MachineHash(); changed != tt.machineToo {
				t.Errorf("MachineHash changed = %v, want %v", changed, tt.machineToo)
			}
		})
	}
}

func TestReadyTimeoutLeavesMachineHash(t *testing.T) {
	a := mustParse(t, edit(t, "  kernel: vmlinuz\n", "  kernel: vmlinuz\n  agent: {port: 5000, readyTimeout: 10s}\n"))
	b := mustParse(t, edit(t, "  kernel: vmlinuz\n", "  kernel: vmlinuz\n  agent: {port: 5000}\n"))
	if a.SpecHash() == b.SpecHash() {
		t.Error("SpecHash did not change with readyTimeout")
	}
	if a.MachineHash() != b.MachineHash() {
		t.Error("MachineHash changed with readyTimeout")
	}
}

func TestHashFormat(t *testing.T) {
	vm := mustParse(t, base)
	hex12 := regexp.MustCompile(`^[0-9a-f]{12}$`)
	for _, h := range []string{vm.SpecHash(), vm.MachineHash()} {
		if !hex12.MatchString(h) {
			t.Errorf("hash %q is not 12 hex digits", h)
		}
	}
}

func TestTimeoutDefaults(t *testing.T) {
	var s Spec
	if s.StopTimeoutOrDefault() != DefaultStopTimeout || s.ReadyTimeoutOrDefault() != DefaultReadyTimeout {
		t.Errorf("defaults = %v, %v", s.StopTimeoutOrDefault(), s.ReadyTimeoutOrDefault())
	}
}
