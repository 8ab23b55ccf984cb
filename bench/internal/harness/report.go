package harness

import (
	"fmt"
	"io"
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
	CPUModel  string `json:"cpu_model"`
	CPUs      int    `json:"cpus"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Date      string `json:"date"`
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
}

func (c Config) summary() ConfigSummary {
	return ConfigSummary{
		CPUs: c.CPUs, Samples: c.Samples, LargeSamples: c.LargeSamples,
		Budget: c.Budget.Seconds(), Duration: c.Duration.Seconds(),
		VerifyEvery: c.VerifyEvery, Dir: c.Dir,
	}
}

// MemcpyReference is single-process copy bandwidth, in GB/s.
type MemcpyReference struct {
	Size     int     `json:"size"`
	GoGBPerS float64 `json:"go_copy_gb_per_s"`
	CGBPerS  float64 `json:"c_memcpy_gb_per_s,omitempty"`
	CNote    string  `json:"c_memcpy_note,omitempty"`
}

// Best is the higher of the two measurements: the bar a copying transport
// is held to.
func (m *MemcpyReference) Best() float64 {
	return max(m.GoGBPerS, m.CGBPerS)
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
	p.printf("machine: %s, %d CPUs, %s, %s, load average %s\n", m.CPUModel, m.CPUs, m.Kernel, m.GoVersion, m.LoadAvg)
	p.printf("side A on CPU %d, side B on CPU %d; rtt %d samples (%d from %s), budget %gs; throughput %gs per job\n",
		r.Config.CPUs[0], r.Config.CPUs[1], r.Config.Samples, r.Config.LargeSamples, FormatSize(LargeSize),
		r.Config.Budget, r.Config.Duration)
	for _, warning := range r.Warnings {
		p.printf("WARNING: %s\n", warning)
	}
	if ref := r.Memcpy; ref != nil {
		p.printf("\nmemcpy reference, %s, one process: Go copy %.2f GB/s", FormatSize(ref.Size), ref.GoGBPerS)
		if ref.CGBPerS > 0 {
			p.printf(", C memcpy %.2f GB/s", ref.CGBPerS)
		} else {
			p.printf(", C memcpy n/a (%s)", ref.CNote)
		}
		p.printf("\n")
	}
	r.writeRTT(p)
	r.writeThroughput(p)
	if len(r.Verdicts) > 0 {
		p.printf("\nTargets\n")
		for _, v := range r.Verdicts {
			p.printf("%s\n", v)
		}
	}
	return p.err
}

// column is one measured column of a results table.
type column struct {
	head string
	cell func(Result) string
}

func (r *Report) writeRTT(p *printer) {
	r.writeTable(p, KindRTT, "Round trip (ping-pong between two processes); ×: p50 relative to the baseline's p50", []column{
		{"samples", func(res Result) string { return strconv.Itoa(res.RTT.Samples) }},
		{"p50", func(res Result) string { return formatNanos(res.RTT.P50) }},
		{"p99", func(res Result) string { return formatNanos(res.RTT.P99) }},
		{"p99.9", func(res Result) string { return formatNanos(res.RTT.P999) }},
		{"×" + nameCRing, func(res Result) string { return r.ratioText(res, nameCRing, p50) }},
		{"×" + nameUnixStream, func(res Result) string { return r.ratioText(res, nameUnixStream, p50) }},
		{"×" + nameNATS, func(res Result) string { return r.ratioText(res, nameNATS, p50) }},
	})
}

func (r *Report) writeThroughput(p *printer) {
	r.writeTable(p, KindThroughput, "One-way throughput (two processes); ×: msgs/s relative to the baseline's", []column{
		{"msgs/s", func(res Result) string { return formatRate(res.Throughput.MsgsPerS) }},
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

func p50(r Result) float64      { return float64(r.RTT.P50) }
func msgsPerS(r Result) float64 { return r.Throughput.MsgsPerS }
func gbPerS(r Result) float64   { return r.Throughput.GBPerS }

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
