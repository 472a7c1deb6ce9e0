package controller

import "syscall"

// errConnRefused is the error of dialing a socket file that no process
// listens on.
var errConnRefused = syscall.ECONNREFUSED
