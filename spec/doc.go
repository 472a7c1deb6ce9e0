// Package spec holds the VirtualMachine manifest type, its strict parsing and
// validation, the spec and machine hashes, and the reading and writing of
// manifest files, including the status write-back that leaves every byte of
// the user's text outside the status member as it was.
package spec
