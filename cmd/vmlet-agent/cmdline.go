package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// channelParam is the kernel command line parameter that names the channel.
const channelParam = "vmlet.agent"

// channel is the agent's transport: the virtio-serial port, or a vsock
// port when VsockPort is not zero.
type channel struct {
	Serial    bool
	VsockPort uint32
}

// errNoChannel means the kernel command line names no agent channel.
var errNoChannel = errors.New("no " + channelParam + "= parameter on the kernel command line")

// parseCmdline returns the channel that cmdline names. The last
// vmlet.agent parameter wins, as the kernel does for repeated parameters.
func parseCmdline(cmdline string) (channel, error) {
	value, found := "", false
	for _, field := range strings.Fields(cmdline) {
		name, v, ok := strings.Cut(field, "=")
		if ok && name == channelParam {
			value, found = v, true
		}
	}
	if !found {
		return channel{}, errNoChannel
	}
	return parseChannel(value)
}

// parseChannel parses the value of vmlet.agent: "serial" or "vsock:PORT".
func parseChannel(value string) (channel, error) {
	if value == "serial" {
		return channel{Serial: true}, nil
	}
	port, ok := strings.CutPrefix(value, "vsock:")
	if !ok {
		return channel{}, fmt.Errorf("%s=%q: invalid channel (use serial or vsock:PORT)", channelParam, value)
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n == 0 {
		return channel{}, fmt.Errorf("%s=%q: invalid vsock port (use a number from 1 to 4294967295)", channelParam, value)
	}
	return channel{VsockPort: uint32(n)}, nil
}
