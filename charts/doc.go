// Package charts holds the tests of the Helm charts beside it: each chart is
// linted and rendered by the helm CLI (built from its Go module by `make helm`)
// with every value set in its ci/ directory, the rendered manifests are checked
// for what the values promise, and every object is applied with a server-side
// dry run to a real kube-apiserver (internal/testenv), which validates it the
// way a cluster would.
package charts
