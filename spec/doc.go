// Package spec holds the VirtualMachine manifest type and everything that
// reads and writes manifest files.
//
// Parse decodes one manifest strictly. It parses the YAML once into a node
// tree, which gives both the values and their line numbers, then decodes a
// JSON form of that tree with unknown fields rejected. Every problem is
// reported at once as "FILE:LINE: FIELD: message". A string field takes
// the text as written, so YAML 1.1 readings (no, off, 1.10) never change
// a value.
//
// SpecHash and MachineHash hash the canonical JSON of the parsed spec, so
// formatting, key order and comments do not change them.
//
// ReplaceStatus, WriteStatus and SetDesiredState change only the bytes of
// one member and keep the rest of the user's text as it was. WriteStatus
// writes atomically and durably and never overwrites an edit made by
// rename after the caller read the file. The functions of this package are
// safe for concurrent use.
package spec
