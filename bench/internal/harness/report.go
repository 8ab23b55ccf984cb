package harness

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run; it is also the -json output.
type Report struct {
	Machine  Machine          `json:"machine"`
	Config   ConfigSummary    `json:"config"`
	Warnings []string         `json:"warnings,omitempty"`
	Memcpy   *MemcpyReference `json:"memcpy,omitempty"`
	Results  []Result         `json:"results"`
	Verdicts []Verdict        `json:"verdicts"`
}

// Machine says where a run happened.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	// CPUs is the number this process may run on; OnlineCPUs the
	// machine's (/proc/cpuinfo), which the load average is relative to.
	CPUs       int    `json:"cpus"`
	OnlineCPUs int    `json:"online_cpus,omitempty"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	Date       string `json:"date"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute load at the start.
	LoadAvg string `json:"load_avg"`
}

// ConfigSummary is the part of the configuration a reader of the figures
// needs.
type ConfigSummary struct {
	CPUs         [2]int  `json:"cpus"`
	Samples      int     `json:"samples"`
	LargeSamples int     `json:"large_samples"`
	Budget       float64 `json:"rtt_budget_s"`
	Duration     float64 `json:"throughput_duration_s"`
	VerifyEvery  int     `json:"verify_every"`
	Dir          string  `json:"dir"`
	// Repeat is how many times each job ran (0 in reports from before
	// repeats: once).
	Repeat     int       `json:"repeat,omitempty"`
	Noise      NoiseRule `json:"noise_rule"`
	ProfileDir string    `json:"cpuprofile_dir,omitempty"`
}

func (c Config) summary() ConfigSummary {
	return ConfigSummary{
		CPUs: c.CPUs, Samples: c.Samples, LargeSamples: c.LargeSamples,
		Budget: c.Budget.Seconds(), Duration: c.Duration.Seconds(),
		VerifyEvery: c.VerifyEvery, Dir: c.Dir,
		Repeat: c.Repeat, Noise: c.Noise, ProfileDir: c.ProfileDir,
	}
}

// MemcpyReference is single-process copy bandwidth, in GB/s: the medians
// of its repeats.
type MemcpyReference struct {
	Size     int     `json:"size"`
	GoGBPerS float64 `json:"go_copy_gb_per_s"`
	CGBPerS  float64 `json:"c_memcpy_gb_per_s,omitempty"`
	CNote    string  `json:"c_memcpy_note,omitempty"`
	// Repeats are the measurements; Spread is per figure ("go", "c" and
	// "best", the higher of the two in each repeat) over them.
	Repeats []MemcpyRun       `json:"repeats,omitempty"`
	Spread  map[string]Spread `json:"spread,omitempty"`
}

// MemcpyRun is one measurement of the memcpy reference.
type MemcpyRun struct {
	GoGBPerS float64 `json:"go_copy_gb_per_s"`
	CGBPerS  float64 `json:"c_memcpy_gb_per_s,omitempty"`
	Load     Load    `json:"load"`
	CPU      *CPUUse `json:"cpu,omitempty"`
}

// Best is the higher of the two measurements: the bar a copying transport
// is held to.
func (m *MemcpyReference) Best() float64 {
	return max(m.GoGBPerS, m.CGBPerS)
}

// combine sets the figures to the medians of the repeats.
func (m *MemcpyReference) combine() {
	var goVals, cVals, best []float64
	for _, r := range m.Repeats {
		goVals = append(goVals, r.GoGBPerS)
		if r.CGBPerS > 0 {
			cVals = append(cVals, r.CGBPerS)
		}
		best = append(best, max(r.GoGBPerS, r.CGBPerS))
	}
	m.Spread = map[string]Spread{"go": spreadOf(goVals), "best": spreadOf(best)}
	if len(cVals) > 0 {
		m.Spread["c"] = spreadOf(cVals)
	}
	m.GoGBPerS, m.CGBPerS = m.Spread["go"].Median, m.Spread["c"].Median
}

// find returns the measured result of backend, kind and size.
func (r *Report) find(backend string, kind Kind, size int) (Result, bool) {
	for _, res := range r.Results {
		if res.Backend == backend && res.Kind == kind && res.Size == size && res.OK() {
			return res, true
		}
	}
	return Result{}, false
}

// WriteText writes the human-readable report.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	m := r.Machine
	p.printf("podipc-bench  %s\n", m.Date)
	cpus := strconv.Itoa(m.CPUs)
	if m.OnlineCPUs != 0 && m.OnlineCPUs != m.CPUs {
		cpus += fmt.Sprintf(" (of %d online)", m.OnlineCPUs)
	}
	p.printf("machine: %s, %s CPUs, %s, %s, load average %s\n", m.CPUModel, cpus, m.Kernel, m.GoVersion, m.LoadAvg)
	p.printf("side A on CPU %d, side B on CPU %d; rtt %d samples (%d from %s), budget %gs; throughput %gs per job\n",
		r.Config.CPUs[0], r.Config.CPUs[1], r.Config.Samples, r.Config.LargeSamples, FormatSize(LargeSize),
		r.Config.Budget, r.Config.Duration)
	if c := r.Config; c.Repeat > 0 {
		busy := fmt.Sprintf("load average above max(%d CPUs, the job's processes) + %.2g", m.loadCPUs(), c.Noise.LoadSlack)
		if c.Noise.MaxForeignCPU > 0 {
			busy = fmt.Sprintf("other work above %.2g CPU during a repeat (where not measured: %s)", c.Noise.MaxForeignCPU, busy)
		}
		p.printf("each job %d× (figures are medians; spread: (max-min)/median); NOISY: %s, or a spread above %.3g%%\n",
			c.Repeat, busy, c.Noise.MaxSpread)
	}
	for _, warning := range r.Warnings {
		p.printf("WARNING: %s\n", warning)
	}
	if ref := r.Memcpy; ref != nil {
		p.printf("\nmemcpy reference, %s, one process: Go copy %.2f GB/s%s", FormatSize(ref.Size), ref.GoGBPerS, ref.spreadText("go"))
		if ref.CGBPerS > 0 {
			p.printf(", C memcpy %.2f GB/s%s", ref.CGBPerS, ref.spreadText("c"))
		} else {
			p.printf(", C memcpy n/a (%s)", ref.CNote)
		}
		p.printf("\n")
	}
	r.writeRTT(p)
	r.writeThroughput(p)
	r.writeRepeats(p)
	if len(r.Verdicts) > 0 {
		p.printf("\nTargets\n")
		for _, v := range r.Verdicts {
			p.printf("%s\n", v)
		}
		p.printf("verdicts: %s\n", TallyVerdicts(r.Verdicts))
	}
	return p.err
}

// spreadText is the spread of one memcpy figure, if it was repeated.
func (m *MemcpyReference) spreadText(name string) string {
	if len(m.Repeats) < 2 {
		return ""
	}
	s := m.Spread[name]
	return fmt.Sprintf(" (%.2f..%.2f, %.1f%%)", s.Min, s.Max, s.Percent)
}

// repeated reports whether any job ran more than once.
func (r *Report) repeated() bool {
	for _, res := range r.Results {
		if len(res.Repeats) > 1 {
			return true
		}
	}
	return false
}

// spreadCell is the spread of res's metric name in percent, or "-".
func spreadCell(res Result, name string) string {
	s, ok := res.Spread[name]
	if !ok || len(res.Repeats) < 2 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", s.Percent)
}

// writeRepeats lists, per job, the range of every figure over its
// repeats and the load average around each repeat.
func (r *Report) writeRepeats(p *printer) {
	var lines []string
	for _, res := range r.Results {
		if !res.OK() || len(res.Repeats) == 0 {
			continue
		}
		var figs []string
		if len(res.Repeats) > 1 {
			for _, m := range metricsOf(res.Kind) {
				s, ok := res.Spread[m.name]
				if !ok || m.name == "samples" || m.name == "messages" || m.name == "seconds" {
					continue
				}
				format := formatRate
				if res.Kind == KindRTT {
					format = func(v float64) string { return formatNanos(int64(v)) }
				} else if m.name == "gb_per_s" {
					format = func(v float64) string { return fmt.Sprintf("%.3f", v) }
				}
				figs = append(figs, fmt.Sprintf("%s %s..%s (%.1f%%)", m.name, format(s.Min), format(s.Max), s.Percent))
			}
		}
		figs = append(figs, repeatLoads(res.Repeats)...)
		lines = append(lines, fmt.Sprintf("%s %s %s: %s", res.Backend, FormatSize(res.Size), res.Kind, strings.Join(figs, ", ")))
	}
	if len(lines) == 0 {
		return
	}
	head := "Repeats: min..max of each figure (spread), 1-minute load average before→after each repeat"
	if r.foreignMeasured() {
		head += ", CPU time other work used during each repeat (other CPU, in CPUs: 0.03 is 3% of one; the hypervisor's steal is part of it)"
	}
	p.printf("\n%s\n", head)
	for _, l := range lines {
		p.printf("%s\n", l)
	}
}

// foreignMeasured reports whether any repeat has a CPU use.
func (r *Report) foreignMeasured() bool {
	for _, res := range r.Results {
		for _, rep := range res.Repeats {
			if rep.CPU != nil {
				return true
			}
		}
	}
	return false
}

// repeatLoads are the load averages around each repeat and, where measured,
// the CPU time other work used during each and its steal, if any.
func repeatLoads(reps []Repeat) []string {
	loads := make([]string, len(reps))
	foreign := make([]string, len(reps))
	steal := make([]string, len(reps))
	var measured, stolen bool
	for i, rep := range reps {
		loads[i] = fmt.Sprintf("%.2f→%.2f", rep.Load.Before, rep.Load.After)
		foreign[i], steal[i] = "-", "-"
		if u := rep.CPU; u != nil {
			measured, stolen = true, stolen || u.Steal >= 0.005
			foreign[i], steal[i] = fmt.Sprintf("%.2f", u.Foreign), fmt.Sprintf("%.2f", u.Steal)
		}
	}
	out := []string{"load " + strings.Join(loads, " ")}
	if measured {
		out = append(out, "other CPU "+strings.Join(foreign, " "))
	}
	if stolen {
		out = append(out, "steal "+strings.Join(steal, " "))
	}
	return out
}

// spreadHead heads the spread columns of the results tables.
const spreadHead = "spread"

// column is one measured column of a results table.
type column struct {
	head string
	cell func(Result) string
}

func (r *Report) writeRTT(p *printer) {
	r.writeTable(p, KindRTT, "Round trip (ping-pong between two processes); ×: p50 relative to the baseline's p50", []column{
		{"samples", func(res Result) string { return strconv.Itoa(res.RTT.Samples) }},
		{"p50", func(res Result) string { return formatNanos(res.RTT.P50) }},
		{spreadHead, func(res Result) string { return spreadCell(res, "p50_ns") }},
		{"p99", func(res Result) string { return formatNanos(res.RTT.P99) }},
		{spreadHead, func(res Result) string { return spreadCell(res, "p99_ns") }},
		{"p99.9", func(res Result) string { return formatNanos(res.RTT.P999) }},
		{spreadHead, func(res Result) string { return spreadCell(res, "p999_ns") }},
		{"×" + nameCRing, func(res Result) string { return r.ratioText(res, nameCRing, p50) }},
		{"×" + nameUnixStream, func(res Result) string { return r.ratioText(res, nameUnixStream, p50) }},
		{"×" + nameNATS, func(res Result) string { return r.ratioText(res, nameNATS, p50) }},
	})
}

func (r *Report) writeThroughput(p *printer) {
	r.writeTable(p, KindThroughput, "One-way throughput (two processes); ×: msgs/s relative to the baseline's", []column{
		{"msgs/s", func(res Result) string { return formatRate(res.Throughput.MsgsPerS) }},
		{spreadHead, func(res Result) string { return spreadCell(res, "msgs_per_s") }},
		{"GB/s", func(res Result) string { return fmt.Sprintf("%.3f", res.Throughput.GBPerS) }},
		{"×" + nameCRing, func(res Result) string { return r.ratioText(res, nameCRing, msgsPerS) }},
		{"×" + nameUnixStream, func(res Result) string { return r.ratioText(res, nameUnixStream, msgsPerS) }},
		{"×" + nameNATS, func(res Result) string { return r.ratioText(res, nameNATS, msgsPerS) }},
	})
}

// writeTable writes the results of kind, one row each, if there are any.
func (r *Report) writeTable(p *printer, kind Kind, title string, cols []column) {
	if !r.has(kind) {
		return
	}
	if !r.repeated() {
		// A single run has no spread to show.
		cols = slices.DeleteFunc(slices.Clone(cols), func(c column) bool { return c.head == spreadHead })
	}
	p.printf("\n%s\n", title)
	tw := tabwriter.NewWriter(p, 2, 8, 2, ' ', 0)
	fmt.Fprint(tw, "transport\tsize\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.head)
	}
	fmt.Fprintln(tw)
	for _, res := range r.Results {
		if res.Kind != kind {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t", res.Backend, FormatSize(res.Size))
		if !res.OK() {
			// Empty cells keep the columns of the rows below aligned.
			fmt.Fprintln(tw, strings.Repeat("-\t", len(cols))+failure(res))
			continue
		}
		for _, c := range cols {
			fmt.Fprintf(tw, "%s\t", c.cell(res))
		}
		fmt.Fprintln(tw)
	}
	p.flush(tw)
}

func (r *Report) has(kind Kind) bool {
	for _, res := range r.Results {
		if res.Kind == kind {
			return true
		}
	}
	return false
}

// ratioText is res's metric over the baseline's at the same size and kind.
func (r *Report) ratioText(res Result, baseline string, metric func(Result) float64) string {
	base, ok := r.find(baseline, res.Kind, res.Size)
	if !ok || metric(base) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", metric(res)/metric(base))
}

// failure is the one-line reason a result holds no measurement.
func failure(res Result) string {
	msg := "error: " + res.Error
	if res.Unavailable != "" {
		msg = "n/a: " + res.Unavailable
	}
	return strings.Join(strings.Fields(msg), " ")
}

// printer remembers the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.w.Write(b)
	p.err = err
	return n, err
}

func (p *printer) printf(format string, args ...any) {
	fmt.Fprintf(p, format, args...)
}

func (p *printer) flush(tw *tabwriter.Writer) {
	if err := tw.Flush(); err != nil && p.err == nil {
		p.err = err
	}
}

// formatNanos prints a duration with three significant digits.
func formatNanos(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

// formatRate prints a rate with an SI prefix.
func formatRate(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// FormatSize prints a byte count as B, KiB or MiB when exact.
func FormatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ParseSize reads a byte count: a number with an optional B, KiB (or K,
// KB) or MiB (M, MB) suffix; the suffixes are binary.
func ParseSize(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"MIB", 1 << 20}, {"KIB", 1 << 10}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}
