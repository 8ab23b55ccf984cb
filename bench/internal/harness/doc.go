// Package bench is the harness behind podipc-bench: it runs one workload
// (round-trip latency or one-way throughput at a message size) over podipc's
// transports and the machine's baselines (pipe, Unix socket, POSIX mqueue, a
// C ring, memcpy) in the same run, between two real processes pinned to CPUs,
// and reports each result with its ratio to the baselines.
package harness
