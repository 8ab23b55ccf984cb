// Package crdcheck holds tests, run by `make verify`, that put the generated
// CRDs in config/crd through the Kubernetes API server's own code: the CRD
// validation a kube-apiserver applies on create (structural schema, CEL
// compilation and cost limits, printer columns), then the defaulting, schema
// and CEL validation it applies to IPCChannel objects, over the cases in
// api/v1alpha1/testdata/validation-cases.yaml that the Go validation also
// passes, and over the examples.
package crdcheck
