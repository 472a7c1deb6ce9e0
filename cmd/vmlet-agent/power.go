package main

import "encoding/binary"

// Input event constants from linux/input-event-codes.h.
const (
	evKey    = 0x01
	keyPower = 116
)

// inputEventSize is the size of struct input_event on 64-bit Linux: a
// struct timeval of two 64-bit words, then the 16-bit type and code and the
// 32-bit value. The agent is built for amd64 and arm64 only, both little
// endian.
const inputEventSize = 24

// isPowerPress reports whether the input event in ev is a press of the
// power key.
func isPowerPress(ev []byte) bool {
	if len(ev) < inputEventSize {
		return false
	}
	typ := binary.LittleEndian.Uint16(ev[16:18])
	code := binary.LittleEndian.Uint16(ev[18:20])
	value := int32(binary.LittleEndian.Uint32(ev[20:24]))
	return typ == evKey && code == keyPower && value == 1
}
