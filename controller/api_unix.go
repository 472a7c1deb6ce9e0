package controller

import "syscall"

// errConnRefused is what dialing a socket file that no process listens on
// returns.
var errConnRefused = syscall.ECONNREFUSED
