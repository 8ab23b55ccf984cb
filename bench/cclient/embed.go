// Package cclient ships the source of podipc-bench's C client peer: one side
// of the c-spin and c-block jobs, written against libpodipc
// (clients/c/include/podipc.h). The benchmark compiles it at run time and
// links it statically against libpodipc.a (see bench/internal/harness).
package cclient

import _ "embed"

// Source is peer.c.
//
//go:embed peer.c
var Source []byte
