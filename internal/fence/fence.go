// Package fence provides the two CPU memory barriers a seqlock needs and Go's
// sync/atomic does not expose: LoadLoad (a reader's data loads complete before
// it re-reads the sequence word) and StoreStore (a writer's "writing" marker
// is visible before its data stores).
//
// On amd64 (TSO) both are compiler-only barriers: an assembly call the
// compiler cannot reorder memory operations across. On arm64 they are
// DMB ISHLD and DMB ISHST.
package fence
