// Package pyclient ships the source of podipc-bench's Python client peer:
// one side of the py-copy, py-zerocopy and py-mq jobs, written against the
// podipc package (clients/python). The benchmark writes it to its cache
// directory and runs it with python3 (see bench/internal/harness).
package pyclient

import _ "embed"

// Source is peer.py.
//
//go:embed peer.py
var Source []byte
