// Package agent implements the guest agent's wire protocol: the host's
// Client, which implements vmruntime.Agent, and Serve, the request loop that
// the guest binary runs.
//
// The protocol is newline-delimited JSON in both directions over one byte
// stream (a virtio-serial port or a vsock connection). Every Request carries
// an id and every Response repeats it, so that a side can drop bytes left in
// the channel from before a snapshot restore. A line that does not parse, or
// a response to an id that no request waits for, is skipped. Blank lines are
// ignored, which lets a writer start with a newline to end any torn line
// that an earlier, interrupted write left behind.
//
// The agent writes exactly one response line for each request, in the order
// the requests finish. The Client sends one request at a time. A boot starts
// with hello and configure; after that the host may send ping, quiesce,
// thaw, exec and shutdown in any order.
package agent
