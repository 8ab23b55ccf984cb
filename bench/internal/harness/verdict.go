package harness

import (
	"fmt"
	"slices"
)

// Verdict is how one measurement compares with one performance target.
type Verdict struct {
	Target   string  `json:"target"`
	Size     int     `json:"size"`
	Status   Status  `json:"status"`
	Ratio    float64 `json:"ratio,omitempty"`
	Limit    float64 `json:"limit"`
	AtMost   bool    `json:"at_most"`
	Subject  string  `json:"subject"`
	Baseline string  `json:"baseline"`
	// Note says why a verdict could not be reached.
	Note string `json:"note,omitempty"`
}

// Status is the outcome of a verdict.
type Status string

const (
	StatusPass Status = "PASS"
	StatusMiss Status = "MISS"
	// StatusNA means the subject or the baseline was not measured.
	StatusNA Status = "n/a"
)

func (v Verdict) String() string {
	head := fmt.Sprintf("%-4s  %s @%s", v.Status, v.Target, FormatSize(v.Size))
	if v.Status == StatusNA {
		return head + ": " + v.Note
	}
	op := "≥"
	if v.AtMost {
		op = "≤"
	}
	return fmt.Sprintf("%s: %s is %.2f× %s (target %s %.2f×)", head, v.Subject, v.Ratio, v.Baseline, op, v.Limit)
}

// memcpyBaseline names the memcpy reference as a verdict baseline.
const memcpyBaseline = "memcpy"

// target is a performance promise, checked as a ratio within one run.
type target struct {
	name     string
	subject  string
	baseline string // a backend, or memcpyBaseline
	kind     Kind
	// size restricts the target to one message size; 0 checks every
	// measured size.
	size   int
	metric func(Result) float64
	limit  float64
	// atMost is set when the ratio must not exceed limit (latencies);
	// otherwise it must reach it (throughputs).
	atMost bool
}

// targets are the promises of the design brief.
func targets() []target {
	return []target{
		{name: "shm spinning rtt p50 within 1.5× of the C ring", subject: nameShmSpin, baseline: nameCRing,
			kind: KindRTT, metric: p50, limit: 1.5, atMost: true},
		{name: "shm blocking rtt p50 at most half the Unix socket's", subject: nameShmBlock, baseline: nameUnixStream,
			kind: KindRTT, metric: p50, limit: 0.5, atMost: true},
		{name: "shm 64 B throughput at least half the C ring's", subject: nameShmSpin, baseline: nameCRing,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 0.5},
		{name: "shm 1 MiB copy throughput at least 70% of memcpy", subject: nameShmSpin, baseline: memcpyBaseline,
			kind: KindThroughput, size: 1 << 20, metric: gbPerS, limit: 0.7},
		{name: "mq with acks rtt p50 at most 2× the Unix socket's", subject: nameMQAtLeastOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 64, metric: p50, limit: 2, atMost: true},
		{name: "mq with acks rtt p50 at most 2× the Unix socket's", subject: nameMQAtLeastOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 2, atMost: true},
		{name: "mq at-most-once rtt p50 at most 2× the Unix socket's", subject: nameMQAtMostOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 64, metric: p50, limit: 2, atMost: true},
		{name: "mq at-most-once rtt p50 at most 2× the Unix socket's", subject: nameMQAtMostOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 2, atMost: true},
		{name: "mq 64 B throughput with acks at least 2× NATS core pub/sub", subject: nameMQAtLeastOnce, baseline: nameNATS,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 2},
	}
}

// judge checks every target against the report's results, at every size
// the run measured (or the target's own size).
func judge(r *Report) []Verdict {
	var sizes []int
	for _, res := range r.Results {
		if !slices.Contains(sizes, res.Size) {
			sizes = append(sizes, res.Size)
		}
	}
	var out []Verdict
	for _, t := range append(targets(), nativeTargets()...) {
		for _, size := range sizes {
			if t.size != 0 && t.size != size {
				continue
			}
			if !r.ran(t.kind, size) {
				continue
			}
			out = append(out, t.check(r, size))
		}
	}
	return out
}

// ran reports whether the run measured anything of kind at size.
func (r *Report) ran(kind Kind, size int) bool {
	for _, res := range r.Results {
		if res.Kind == kind && res.Size == size {
			return true
		}
	}
	return false
}

func (t target) check(r *Report, size int) Verdict {
	v := Verdict{Target: t.name, Size: size, Status: StatusNA, Limit: t.limit, AtMost: t.atMost,
		Subject: t.subject, Baseline: t.baseline}
	subj, ok := r.find(t.subject, t.kind, size)
	if !ok {
		v.Note = t.subject + " not measured"
		return v
	}
	var base float64
	if t.baseline == memcpyBaseline {
		if r.Memcpy != nil {
			base = r.Memcpy.Best()
		}
	} else if res, ok := r.find(t.baseline, t.kind, size); ok {
		base = t.metric(res)
	}
	if base <= 0 {
		v.Note = t.baseline + " not measured"
		return v
	}
	v.Ratio = t.metric(subj) / base
	pass := v.Ratio >= t.limit
	if t.atMost {
		pass = v.Ratio <= t.limit
	}
	v.Status = StatusMiss
	if pass {
		v.Status = StatusPass
	}
	return v
}
