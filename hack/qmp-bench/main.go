// Command qmp-bench measures QEMU's own save and restore of a guest, driven
// over QMP with no vmlet, as the baseline that hack/bench-qemu compares
// vmlet's suspend and resume with.
//
// It boots the guest image once and waits for its agent to serve. Each
// round then saves the guest (QMP stop, then migrate into a file with the
// bandwidth cap lifted, then fsync) and restores it into a new QEMU
// started with -incoming, up to QMP cont. It prints one line per
// operation: "save SECONDS BYTES" or "restore SECONDS".
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// maxBandwidth lifts QEMU's default migration cap of 128 MiB/s, in bytes
// per second, as vmlet's qemu backend does.
const maxBandwidth = 1 << 40

// bootTimeout bounds the first boot. A TCG boot took up to half a minute
// on a loaded two-core machine.
const bootTimeout = 5 * time.Minute

type options struct {
	qemu, kernel, initrd, dir, machine string
	memoryMiB, rounds                  int
}

func main() {
	var o options
	flag.StringVar(&o.qemu, "qemu", "qemu-system-x86_64", "QEMU system emulator")
	flag.StringVar(&o.kernel, "kernel", "", "guest kernel")
	flag.StringVar(&o.initrd, "initrd", "", "guest initramfs")
	flag.StringVar(&o.dir, "dir", "", "folder for the checkpoint, sockets and logs (on the disk under test)")
	flag.StringVar(&o.machine, "machine", "pc-i440fx-7.2", "versioned machine type")
	flag.IntVar(&o.memoryMiB, "memory", 256, "guest memory in MiB")
	flag.IntVar(&o.rounds, "rounds", 3, "save and restore rounds")
	flag.Parse()
	if o.kernel == "" || o.initrd == "" || o.dir == "" {
		fmt.Fprintln(os.Stderr, "usage: qmp-bench -kernel FILE -initrd FILE -dir DIR [-rounds N]")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "qmp-bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	g, err := boot(o, "")
	if err != nil {
		return err
	}
	defer func() { g.kill() }()
	if err := g.awaitConsole([]byte("Serving"), bootTimeout); err != nil {
		return err
	}
	checkpoint := filepath.Join(o.dir, "checkpoint")
	for range o.rounds {
		if err := saveRound(g, checkpoint); err != nil {
			return err
		}
		g.kill()
		if g, err = restoreRound(o, checkpoint); err != nil {
			return err
		}
	}
	return nil
}

// saveRound saves the running guest into path and prints the time taken.
func saveRound(g *guest, path string) error {
	os.Remove(path)
	start := time.Now()
	if err := g.qmp.execute("migrate-set-parameters", map[string]any{"max-bandwidth": maxBandwidth}); err != nil {
		return err
	}
	if err := g.qmp.execute("stop", nil); err != nil {
		return err
	}
	if err := g.qmp.execute("migrate", map[string]any{"uri": "exec:cat > " + path}); err != nil {
		return err
	}
	if err := g.qmp.awaitMigration(); err != nil {
		return err
	}
	size, err := fsync(path)
	if err != nil {
		return err
	}
	fmt.Printf("save %.6f %d\n", time.Since(start).Seconds(), size)
	return nil
}

// restoreRound starts a QEMU that restores path, lets it run, and prints
// the time from the process start to QMP cont.
func restoreRound(o options, path string) (*guest, error) {
	start := time.Now()
	g, err := boot(o, "exec:cat "+path)
	if err != nil {
		return nil, err
	}
	if err := g.qmp.awaitMigration(); err != nil {
		g.kill()
		return nil, err
	}
	if err := g.qmp.execute("cont", nil); err != nil {
		g.kill()
		return nil, err
	}
	fmt.Printf("restore %.6f\n", time.Since(start).Seconds())
	return g, nil
}

func fsync(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// guest is one QEMU process and its QMP connection.
type guest struct {
	cmd     *exec.Cmd
	qmp     *qmp
	console string
}

// boot starts QEMU with the arguments vmlet's backend uses for a VM
// without disks or network, restoring from incoming when it is not "".
func boot(o options, incoming string) (*guest, error) {
	socket := filepath.Join(o.dir, "qmp.sock")
	os.Remove(socket)
	g := &guest{console: filepath.Join(o.dir, "console.log")}
	args := []string{
		"-machine", o.machine, "-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(o.memoryMiB), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", o.kernel, "-initrd", o.initrd, "-append", "console=ttyS0 vmlet.agent=serial",
		"-chardev", "file,id=console,append=on,path=" + g.console, "-serial", "chardev:console",
		"-device", "virtio-serial-pci,id=vmlet-serial",
		"-chardev", "socket,id=agent,server=on,wait=off,path=" + filepath.Join(o.dir, "agent.sock"),
		"-device", "virtserialport,bus=vmlet-serial.0,chardev=agent,name=vmlet.agent",
		"-qmp", "unix:" + socket + ",server=on,wait=off", "-nic", "none",
	}
	if incoming != "" {
		args = append(args, "-incoming", incoming)
	}
	g.cmd = exec.Command(o.qemu, args...)
	g.cmd.Stderr = os.Stderr
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	q, err := dialQMP(socket, 30*time.Second)
	if err != nil {
		g.kill()
		return nil, err
	}
	g.qmp = q
	return g, nil
}

func (g *guest) kill() {
	if g.qmp != nil {
		g.qmp.conn.Close()
	}
	g.cmd.Process.Kill()
	g.cmd.Wait()
}

// awaitConsole polls the console log until it contains marker.
func (g *guest) awaitConsole(marker []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(g.console)
		if bytes.Contains(data, marker) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("console log %q lacks %q after %s", g.console, marker, timeout)
}

// qmp is a QMP connection that runs one command at a time.
type qmp struct {
	conn net.Conn
	in   *bufio.Reader
}

func dialQMP(socket string, timeout time.Duration) (*qmp, error) {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			q := &qmp{conn: conn, in: bufio.NewReader(conn)}
			if _, err := q.in.ReadBytes('\n'); err != nil { // the greeting
				return nil, err
			}
			return q, q.execute("qmp_capabilities", nil)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dialing QMP %q: %w", socket, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reply is a QMP reply or an event. call skips events.
type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// call sends one command and returns its reply's return value.
func (q *qmp) call(command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.conn).Encode(req); err != nil {
		return nil, err
	}
	for {
		line, err := q.in.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		var r reply
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		if r.Event != "" {
			continue
		}
		if r.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", command, r.Error.Class, r.Error.Desc)
		}
		return r.Return, nil
	}
}

func (q *qmp) execute(command string, args any) error {
	_, err := q.call(command, args)
	return err
}

// awaitMigration polls query-migrate until the outgoing or incoming
// migration has completed.
func (q *qmp) awaitMigration() error {
	for {
		raw, err := q.call("query-migrate", nil)
		if err != nil {
			return err
		}
		var info struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			return err
		}
		switch info.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return errors.New("migration " + info.Status + ": " + info.Error)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
