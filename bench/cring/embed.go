// Package cring ships the source of the C busy-poll ring that podipc-bench
// runs as the machine-limit baseline. The benchmark compiles it at run time
// with the system C compiler (see bench/internal/harness).
package cring

import _ "embed"

// Source is ring.c: a minimal single-producer single-consumer ring on a tmpfs
// file shared by two processes.
//
//go:embed ring.c
var Source []byte
