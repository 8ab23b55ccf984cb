package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// ErrUnavailable marks a job a transport cannot run on this machine (a
// kernel limit, a missing compiler); the report shows it as n/a with the
// wrapped reason instead of failing the run.
var ErrUnavailable = errors.New("unavailable")

// Conn is one side of a duplex message link between the two benchmark
// processes. A Conn is used by one goroutine at a time.
type Conn interface {
	// Send transmits msg as one message.
	Send(ctx context.Context, msg []byte) error
	// Recv waits for the next message and returns it. The slice stays valid
	// until Release; zero-copy transports return memory of the channel itself.
	Recv(ctx context.Context) ([]byte, error)
	// Release ends the use of the message returned by the last Recv.
	Release() error
	// Close releases this side's resources.
	Close() error
}

// LinkSpec describes the link a job needs.
type LinkSpec struct {
	// Size is the exact size of every message, in bytes.
	Size int
	// Slots is the ring depth, for transports that have one.
	Slots int
	// Dir is where file-backed transports put their files (a tmpfs).
	Dir string
	// Kind is what the job measures, for transports whose libraries offer a
	// pattern for each (NATS: request/reply or publish/subscribe).
	Kind Kind
}

// Handoff is what the peer process needs to attach to a link.
type Handoff struct {
	// Files are inherited by the peer, in this order. The harness closes the
	// coordinator's copies once the peer has started, so that a transport
	// sees end-of-file when the peer dies.
	Files []*os.File
	// Params are transport-specific strings (names, paths).
	Params map[string]string
}

// Link is a duplex link set up by the coordinator for one job.
type Link interface {
	// Handoff returns what the peer needs to attach side B.
	Handoff() Handoff
	// Open opens side A, in the coordinator.
	Open() (Conn, error)
	// Close releases everything Setup created.
	Close() error
}

// Transport is a transport implemented in Go and measured by the
// two-process harness: the coordinator runs side A, a re-exec of the same
// binary runs side B.
type Transport interface {
	// Setup creates the resources of one link; it runs in the coordinator.
	Setup(spec LinkSpec) (Link, error)
	// Attach opens side B of a link in the peer process.
	Attach(spec LinkSpec, h Handoff) (Conn, error)
}

// allocatingTransport is implemented by transports measured through a
// client library as shipped (podipc mq, NATS), which allocates per message:
// the garbage collector stays on in their timed loops, since its cost is
// theirs, and the no-allocation guard does not apply to them.
type allocatingTransport interface {
	allocates()
}

// runTimed runs a timed loop of t: with the garbage collector off (see
// withoutGC) unless t allocates by design.
func runTimed(t Transport, fn func() error) error {
	if _, ok := t.(allocatingTransport); ok {
		runtime.GC()
		return fn()
	}
	return withoutGC(fn)
}

// Standalone is a backend that measures itself outside the Go harness (the
// C ring, which forks its own pinned pair of processes).
type Standalone interface {
	Measure(ctx context.Context, env Env, job Job) (Result, error)
}

// Backend is one entry of the benchmark's transport table. Exactly one of
// Transport and Standalone is set.
type Backend struct {
	// Name identifies the backend on the command line and in reports.
	Name string
	// About says in a few words what is measured.
	About string

	Transport  Transport
	Standalone Standalone
}

// measure runs one job of this backend.
func (b Backend) measure(ctx context.Context, env Env, job Job) (Result, error) {
	switch {
	case b.Standalone != nil:
		return b.Standalone.Measure(ctx, env, job)
	case b.Transport != nil:
		return runTwoProcess(ctx, env, b.Transport, job)
	default:
		return Result{}, fmt.Errorf("backend %s has no implementation", b.Name)
	}
}

// Lookup returns the backend called name.
func Lookup(name string) (Backend, error) {
	for _, b := range Backends() {
		if b.Name == name {
			return b, nil
		}
	}
	return Backend{}, fmt.Errorf("unknown transport %q", name)
}

// BackendNames returns the names of all backends in report order.
func BackendNames() []string {
	all := Backends()
	names := make([]string, len(all))
	for i, b := range all {
		names[i] = b.Name
	}
	return names
}
