package harness

import (
	"fmt"
	"slices"
	"strings"
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
	// SubjectSpread and BaselineSpread are the spreads, in percent of the
	// median, of the compared figure over the repeats.
	SubjectSpread  float64 `json:"subject_spread_pct"`
	BaselineSpread float64 `json:"baseline_spread_pct"`
	// Medians is what the ratio of the medians says (PASS or MISS) when
	// there is a ratio; it differs from Status only when Status is NOISY.
	Medians Status `json:"medians,omitempty"`
	// Note says why a verdict could not be reached, or why it is NOISY.
	Note string `json:"note,omitempty"`
	// Floor, for an absolute target, is the figure (in Unit) the subject
	// must reach; the baseline is then the floor itself, Value the
	// subject's figure and Ratio Value / Floor.
	Floor float64 `json:"floor,omitempty"`
	Unit  string  `json:"unit,omitempty"`
	Value float64 `json:"value,omitempty"`
}

// Status is the outcome of a verdict.
type Status string

const (
	StatusPass Status = "PASS"
	StatusMiss Status = "MISS"
	// StatusNoisy means the machine was busy while the subject or the
	// baseline ran, or their repeats disagreed (see NoiseRule): the ratio is
	// reported, but it proves nothing either way.
	StatusNoisy Status = "NOISY"
	// StatusNA means the subject or the baseline was not measured.
	StatusNA Status = "n/a"
)

func (v Verdict) String() string {
	head := fmt.Sprintf("%-5s  %s @%s", v.Status, v.Target, FormatSize(v.Size))
	if v.Status == StatusNA {
		return head + ": " + v.Note
	}
	op := "≥"
	if v.AtMost {
		op = "≤"
	}
	line := fmt.Sprintf("%s: %s is %.2f× %s (target %s %.2f×)", head, v.Subject, v.Ratio, v.Baseline, op, v.Limit)
	if v.Floor > 0 {
		line = fmt.Sprintf("%s: %s is %.0f %s, %.2f× the floor (target %s %.0f %s)", head, v.Subject, v.Value, v.Unit,
			v.Ratio, op, v.Limit*v.Floor, v.Unit)
	}
	if v.Status == StatusNoisy {
		line += fmt.Sprintf(", medians say %s: %s", v.Medians, v.Note)
	}
	return line
}

// NoiseRule decides when a figure is too disturbed to judge a target by.
//
// A repeat measured the CPU time other work took while it ran (CPUUse): the
// machine's busy time less the benchmark's own process tree's. On a machine
// of two CPUs, where the sides are pinned one to each, that is time taken
// from the sides or from the helpers they wait for. Repeats without that
// reading (reports saved before it existed, or no /proc) fall back to the
// load average: a job runs two processes (its sides), three for the
// transports with a server process (see ownProcesses), and on a machine of
// n CPUs a 1-minute load average above max(n, own processes) means other
// work was waiting for CPUs. The load average trails by a minute and
// carries the benchmark's own earlier jobs into the next, which is why it
// is only the fallback. Either reading misses what the spread of the
// repeats catches: a figure disturbed by something inside the run itself.
type NoiseRule struct {
	// MaxForeignCPU: a repeat ran on a busy machine when other work used
	// more than this much CPU time during it, as a fraction of one CPU over
	// the repeat's wall time (CPUUse.Foreign), beyond the counters'
	// resolution (CPUUse.Resolution). On an idle 2-CPU machine kernel
	// threads and daemons take about 0.01; with the kernel's own work for
	// the benchmark that is charged to no process (idle entries and exits,
	// page freeing) quick runs read at most 0.06 for the mq transports and
	// 0.12 for pipe at 1 MiB, rounding included (docs/benchmarks.md).
	MaxForeignCPU float64 `json:"max_foreign_cpu,omitempty"`
	// LoadSlack: a repeat without a foreign CPU reading ran on a busy
	// machine when the load average before or after it exceeded max(online
	// CPUs, the job's processes) plus LoadSlack.
	LoadSlack float64 `json:"load_slack"`
	// MaxSpread: a figure whose repeats spread over more than MaxSpread
	// percent of their median is noisy.
	MaxSpread float64 `json:"max_spread_pct"`
}

// DefaultNoiseRule is the rule of `make bench`.
func DefaultNoiseRule() NoiseRule {
	return NoiseRule{MaxForeignCPU: 0.1, LoadSlack: 0.5, MaxSpread: 15}
}

// figure is one compared figure of a verdict: its repeats' loads and CPU
// use, and its spread.
type figure struct {
	name string
	// own is how many processes the figure's job runs.
	own   int
	loads []Load
	// cpus are the repeats' CPU use, in the order of loads; a repeat
	// without a reading is nil or missing.
	cpus   []*CPUUse
	spread Spread
	runs   int
}

// why returns why figures cannot be trusted under the rule on a machine
// of cpus CPUs, or "".
func (n NoiseRule) why(cpus int, figures ...figure) string {
	var reasons []string
	for _, f := range figures {
		if r := n.busy(cpus, f); r != "" {
			reasons = append(reasons, r)
		}
	}
	for _, f := range figures {
		if f.runs > 1 && f.spread.Percent > n.MaxSpread {
			reasons = append(reasons, fmt.Sprintf("%s spread %.1f%% over %d repeats, above %.3g%%", f.name, f.spread.Percent, f.runs, n.MaxSpread))
		}
	}
	return strings.Join(reasons, "; ")
}

// busy says why f ran on a busy machine, or "": the repeat where other
// work took the most CPU time, if above the limit, and the load average
// around the repeats without a CPU reading.
func (n NoiseRule) busy(cpus int, f figure) string {
	var reasons []string
	// worst is the repeat whose foreign CPU exceeds the limit most, beyond
	// the counters' resolution.
	worst, excess := -1, 0.0
	peak := -1.0
	for i, l := range f.loads {
		var u *CPUUse
		if i < len(f.cpus) {
			u = f.cpus[i]
		}
		switch {
		case u == nil:
			peak = max(peak, l.Peak())
		case u.Foreign-u.Resolution-n.MaxForeignCPU > excess:
			worst, excess = i, u.Foreign-u.Resolution-n.MaxForeignCPU
		}
	}
	if worst >= 0 {
		u := f.cpus[worst]
		steal := ""
		if u.Steal >= 0.005 {
			steal = fmt.Sprintf(", %.2f of it steal", u.Steal)
		}
		reasons = append(reasons, fmt.Sprintf("other work used %.2f±%.2f CPU during %s repeat %d of %d%s, above %.2g",
			u.Foreign, u.Resolution, f.name, worst+1, len(f.loads), steal, n.MaxForeignCPU))
	}
	if allowed := max(cpus, f.own); cpus > 0 && peak > float64(allowed)+n.LoadSlack {
		reasons = append(reasons, fmt.Sprintf("load average %.2f during %s, above %d + %.2g", peak, f.name, allowed, n.LoadSlack))
	}
	return strings.Join(reasons, "; ")
}

// ownProcesses is how many processes a job of backend keeps busy: its two
// sides, and the broker or server of the queue transports.
func ownProcesses(backend string) int {
	switch backend {
	case nameMQAtLeastOnce, nameMQAtMostOnce, nameNATS, namePyMQ:
		return 3
	}
	return 2
}

// resultFigure is metric m of res as a verdict compares it.
func resultFigure(res Result, m func(Result) float64) figure {
	f := figure{name: res.Backend, own: ownProcesses(res.Backend)}
	var vs []float64
	for _, rep := range res.repeats() {
		f.loads, f.cpus = append(f.loads, rep.Load), append(f.cpus, rep.CPU)
		vs = append(vs, m(Result{Kind: res.Kind, RTT: rep.RTT, Throughput: rep.Throughput}))
	}
	f.spread, f.runs = spreadOf(vs), len(vs)
	return f
}

// memcpyFigure is the memcpy reference as a verdict compares it.
func memcpyFigure(m *MemcpyReference) figure {
	f := figure{name: memcpyBaseline, own: 1, spread: m.Spread["best"], runs: len(m.Repeats)}
	for _, rep := range m.Repeats {
		f.loads, f.cpus = append(f.loads, rep.Load), append(f.cpus, rep.CPU)
	}
	return f
}

// Tally counts verdicts by status.
type Tally map[Status]int

// TallyVerdicts counts vs by status.
func TallyVerdicts(vs []Verdict) Tally {
	t := Tally{}
	for _, v := range vs {
		t[v.Status]++
	}
	return t
}

func (t Tally) String() string {
	var parts []string
	for _, s := range []Status{StatusPass, StatusMiss, StatusNoisy, StatusNA} {
		parts = append(parts, fmt.Sprintf("%d %s", t[s], s))
	}
	return strings.Join(parts, ", ")
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
	// floor, when set, makes the target absolute: the baseline is this
	// fixed figure of the metric, in unit, instead of a measured one.
	floor float64
	unit  string
}

// targets are the data path's promises (issue 13 of the project's tracker;
// docs/benchmarks.md lists them): ratios within one run, so that a slower
// or busier machine moves subject and baseline together.
func targets() []target {
	return []target{
		{name: "shm spinning rtt p50 within 1.3× of the C ring", subject: nameShmSpin, baseline: nameCRing,
			kind: KindRTT, size: 64, metric: p50, limit: 1.3, atMost: true},
		{name: "shm spinning rtt p50 within 1.5× of the C ring", subject: nameShmSpin, baseline: nameCRing,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 1.5, atMost: true},
		{name: "shm hybrid wait rtt p50 within 1.2× of spinning", subject: nameShmHybrid, baseline: nameShmSpin,
			kind: KindRTT, size: 64, metric: p50, limit: 1.2, atMost: true},
		{name: "shm blocking rtt p50 at most half the Unix socket's", subject: nameShmBlock, baseline: nameUnixStream,
			kind: KindRTT, size: 64, metric: p50, limit: 0.5, atMost: true},
		{name: "shm blocking rtt p50 at most half the Unix socket's", subject: nameShmBlock, baseline: nameUnixStream,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 0.5, atMost: true},
		{name: "shm copy throughput at least 0.6× the C ring's", subject: nameShmSpin, baseline: nameCRing,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 0.6},
		{name: "shm zero-copy throughput at least 0.8× the C ring's", subject: nameShmZC, baseline: nameCRing,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 0.8},
		{name: "shm copy throughput at least 0.8× the C ring's", subject: nameShmSpin, baseline: nameCRing,
			kind: KindThroughput, size: 1 << 20, metric: msgsPerS, limit: 0.8},
		{name: "shm zero-copy throughput at least the C ring's", subject: nameShmZC, baseline: nameCRing,
			kind: KindThroughput, size: 1 << 20, metric: msgsPerS, limit: 1},
		{name: "shm 1 MiB copy throughput at least 70% of memcpy", subject: nameShmSpin, baseline: memcpyBaseline,
			kind: KindThroughput, size: 1 << 20, metric: gbPerS, limit: 0.7},
		{name: "mq with acks rtt p50 at most 3× the Unix socket's", subject: nameMQAtLeastOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 64, metric: p50, limit: 3, atMost: true},
		{name: "mq with acks rtt p50 at most 3× the Unix socket's", subject: nameMQAtLeastOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 3, atMost: true},
		{name: "mq at-most-once rtt p50 at most 3× the Unix socket's", subject: nameMQAtMostOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 64, metric: p50, limit: 3, atMost: true},
		{name: "mq at-most-once rtt p50 at most 3× the Unix socket's", subject: nameMQAtMostOnce, baseline: nameUnixStream,
			kind: KindRTT, size: 4 << 10, metric: p50, limit: 3, atMost: true},
		{name: "mq with acks throughput at least 1.5× NATS core pub/sub", subject: nameMQAtLeastOnce, baseline: nameNATS,
			kind: KindThroughput, size: 64, metric: msgsPerS, limit: 1.5},
		{name: "mq with acks throughput at least NATS core pub/sub's", subject: nameMQAtLeastOnce, baseline: nameNATS,
			kind: KindThroughput, size: 4 << 10, metric: msgsPerS, limit: 1},
		{name: "mq with acks throughput at least NATS core pub/sub's", subject: nameMQAtLeastOnce, baseline: nameNATS,
			kind: KindThroughput, size: 1 << 20, metric: msgsPerS, limit: 1},
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
	for _, t := range slices.Concat(targets(), nativeTargets(), pyMQTargets()) {
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
	var baseFig figure
	if t.floor > 0 {
		base = t.floor
		v.Baseline, v.Floor, v.Unit, v.Value = "floor", t.floor, t.unit, t.metric(subj)
	} else if t.baseline == memcpyBaseline {
		if r.Memcpy != nil {
			base, baseFig = r.Memcpy.Best(), memcpyFigure(r.Memcpy)
		}
	} else if res, ok := r.find(t.baseline, t.kind, size); ok {
		base, baseFig = t.metric(res), resultFigure(res, t.metric)
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
	v.Medians = v.Status
	subjFig := resultFigure(subj, t.metric)
	v.SubjectSpread, v.BaselineSpread = subjFig.spread.Percent, baseFig.spread.Percent
	if why := r.Config.Noise.why(r.Machine.loadCPUs(), subjFig, baseFig); why != "" {
		v.Status, v.Note = StatusNoisy, why
	}
	return v
}

// loadCPUs is the CPU count the load average is relative to.
func (m Machine) loadCPUs() int {
	if m.OnlineCPUs > 0 {
		return m.OnlineCPUs
	}
	return m.CPUs
}
