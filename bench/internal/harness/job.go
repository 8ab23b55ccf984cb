package harness

import (
	"log/slog"
	"time"
)

// Kind is what a job measures.
type Kind string

const (
	// KindRTT is ping-pong: side A sends a message, side B echoes it, and A
	// times each round trip.
	KindRTT Kind = "rtt"
	// KindThroughput is one-way streaming from A to B; B counts and times
	// what it receives.
	KindThroughput Kind = "throughput"
)

// Job is one measurement: one backend, one kind, one message size. It is
// passed to the peer process as JSON.
type Job struct {
	Backend string `json:"backend"`
	Kind    Kind   `json:"kind"`
	Size    int    `json:"size"`
	// Slots is the ring depth of ring-based transports.
	Slots int `json:"slots"`
	// Warmup messages are exchanged before timing starts.
	Warmup int `json:"warmup"`
	// Samples is the number of timed round trips (rtt).
	Samples int `json:"samples"`
	// Budget stops an rtt job early, with fewer samples, once it has run
	// this long; slow transports then do not stretch the run.
	Budget time.Duration `json:"budget"`
	// Duration is how long the sender streams (throughput).
	Duration time.Duration `json:"duration"`
	// VerifyEvery is how often the receiver checksums a whole payload (one
	// message in VerifyEvery); stamps are checked on every message.
	VerifyEvery int `json:"verify_every"`
	// CPUs are the CPUs of side A and side B; -1 leaves a side unpinned.
	CPUs [2]int `json:"cpus"`
	// Dir is the directory of file-backed transports (a tmpfs).
	Dir string `json:"dir"`

	// Profile, when set, makes each side write a CPU profile of its timed
	// loop to Profile + "-a.pprof" (side A, the coordinator) and
	// Profile + "-b.pprof" (side B, the peer process).
	Profile string `json:"profile,omitempty"`

	// Params and Files describe the link for the peer (filled by the harness).
	Params map[string]string `json:"params,omitempty"`
	Files  int               `json:"files,omitempty"`
}

func (j Job) linkSpec() LinkSpec {
	return LinkSpec{Size: j.Size, Slots: j.Slots, Dir: j.Dir, Kind: j.Kind}
}

// timeout bounds the whole job, so that a wedged peer cannot hang the run.
func (j Job) timeout() time.Duration {
	return j.Budget + j.Duration + time.Minute
}

// Env is what running a job needs besides the job.
type Env struct {
	// Self is the executable re-run as the peer process (see PeerMain).
	Self string
	// CC is the C compiler for the C ring.
	CC string
	// CacheDir holds compiled helpers.
	CacheDir string
	Log      *slog.Logger
}

// Result is the outcome of one job over all its repeats: RTT or Throughput
// hold the medians of the repeats' figures, metric by metric.
type Result struct {
	Backend string `json:"transport"`
	Kind    Kind   `json:"kind"`
	Size    int    `json:"size"`
	// Unavailable says why the backend cannot run this job here.
	Unavailable string `json:"unavailable,omitempty"`
	// Error says why the job failed.
	Error      string           `json:"error,omitempty"`
	RTT        *RTTStats        `json:"rtt,omitempty"`
	Throughput *ThroughputStats `json:"throughput,omitempty"`
	// Repeats are the job's runs, in order; a report written before
	// repeats existed has none, and its figures count as one repeat.
	Repeats []Repeat `json:"repeats,omitempty"`
	// Spread is, per metric (named as in RTTStats or ThroughputStats), the
	// median, range and spread of the repeats.
	Spread map[string]Spread `json:"spread,omitempty"`
}

// Repeat is one run of a job.
type Repeat struct {
	RTT        *RTTStats        `json:"rtt,omitempty"`
	Throughput *ThroughputStats `json:"throughput,omitempty"`
	// Load is the machine's load around the run.
	Load Load `json:"load"`
	// CPU is the CPU time the machine, the benchmark and other work used
	// while the run went; nil in reports from before it was measured, or
	// where /proc could not be read.
	CPU *CPUUse `json:"cpu,omitempty"`
}

// Load is the 1-minute load average (/proc/loadavg) read just before and
// just after a run; -1 where it could not be read.
type Load struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
}

// Peak is the higher of the two readings.
func (l Load) Peak() float64 { return max(l.Before, l.After) }

// repeats returns r's repeats, or its figures as the only one for a
// report written before repeats existed.
func (r Result) repeats() []Repeat {
	if len(r.Repeats) == 0 && r.OK() {
		return []Repeat{{RTT: r.RTT, Throughput: r.Throughput, Load: Load{-1, -1}}}
	}
	return r.Repeats
}

// OK reports whether r holds a measurement.
func (r Result) OK() bool {
	return r.Unavailable == "" && r.Error == "" && (r.RTT != nil || r.Throughput != nil)
}

// RTTStats summarises round-trip times, in nanoseconds.
type RTTStats struct {
	Samples int   `json:"samples"`
	Min     int64 `json:"min_ns"`
	Mean    int64 `json:"mean_ns"`
	P50     int64 `json:"p50_ns"`
	P99     int64 `json:"p99_ns"`
	P999    int64 `json:"p999_ns"`
	Max     int64 `json:"max_ns"`
}

// ThroughputStats summarises one-way streaming.
type ThroughputStats struct {
	// Messages were received in Seconds, after warm-up.
	Messages int64   `json:"messages"`
	Seconds  float64 `json:"seconds"`
	MsgsPerS float64 `json:"msgs_per_s"`
	GBPerS   float64 `json:"gb_per_s"`
}

func newThroughput(msgs int64, seconds float64, size int) *ThroughputStats {
	t := &ThroughputStats{Messages: msgs, Seconds: seconds}
	if seconds > 0 {
		t.MsgsPerS = float64(msgs) / seconds
		t.GBPerS = t.MsgsPerS * float64(size) / 1e9
	}
	return t
}
