// The benchmark harness and podipc-bench: a module of its own, so that the
// baselines it measures podipc against (the NATS client among them) never
// enter the product's go.mod. It builds against the podipc module in the
// parent directory.
module github.com/podipc/podipc/bench

go 1.26.0

require (
	github.com/nats-io/nats.go v1.55.0
	github.com/podipc/podipc v0.0.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/klauspost/compress v1.20.1 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	golang.org/x/crypto v0.57.0 // indirect
)

replace github.com/podipc/podipc => ../
