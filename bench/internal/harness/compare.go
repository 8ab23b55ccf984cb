package harness

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// comparedMetric is a figure the before/after table shows.
type comparedMetric struct {
	kind Kind
	metric
	format func(float64) string
	// lowerIsBetter is set for latencies.
	lowerIsBetter bool
}

// comparedMetrics are the rows of the comparison for each job, in order.
var comparedMetrics = []comparedMetric{
	{KindRTT, rttMetrics[0], func(v float64) string { return formatNanos(int64(v)) }, true},
	{KindRTT, rttMetrics[1], func(v float64) string { return formatNanos(int64(v)) }, true},
	{KindThroughput, throughputMetrics[0], formatRate, false},
}

// jobKey identifies a job across reports.
type jobKey struct {
	backend string
	kind    Kind
	size    int
}

func (r Result) key() jobKey { return jobKey{r.Backend, r.Kind, r.Size} }

// Comparison is a before/after view of two reports.
type Comparison struct {
	Rows     []ComparisonRow
	Verdicts []VerdictChange
}

// ComparisonRow is one metric of one job in both reports. A side without a
// measurement has OK false.
type ComparisonRow struct {
	Backend, Metric string
	Kind            Kind
	Size            int
	Before, After   ComparedValue
	// Change is (After - Before) / Before in percent; NaN unless both
	// sides are measured.
	Change float64
	// Assessment is "better", "worse" or "within spread" (the change is no
	// larger than either side's spread), or "" when it cannot be said.
	Assessment string
	format     func(float64) string
}

// ComparedValue is a median with its spread.
type ComparedValue struct {
	OK     bool
	Median float64
	// Spread is in percent of the median; Repeats how many runs it is of.
	Spread  float64
	Repeats int
}

// VerdictChange is one target's verdict in both reports.
type VerdictChange struct {
	Target        string
	Size          int
	Before, After *Verdict
}

// Compare builds the before/after view of two reports: every job of
// either, in the order of after and then of the jobs only before has.
func Compare(before, after *Report) Comparison {
	var keys []jobKey
	seen := map[jobKey]bool{}
	for _, rep := range []*Report{after, before} {
		for _, res := range rep.Results {
			if k := res.key(); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	var c Comparison
	for _, k := range keys {
		for _, m := range comparedMetrics {
			if m.kind != k.kind {
				continue
			}
			row := ComparisonRow{Backend: k.backend, Metric: m.name, Kind: k.kind, Size: k.size, format: m.format,
				Before: compared(before, k, m.metric), After: compared(after, k, m.metric), Change: math.NaN()}
			if row.Before.OK && row.After.OK && row.Before.Median != 0 {
				row.Change = 100 * (row.After.Median - row.Before.Median) / row.Before.Median
				row.Assessment = assess(row, m.lowerIsBetter)
			}
			c.Rows = append(c.Rows, row)
		}
	}
	c.Verdicts = compareVerdicts(before.Verdicts, after.Verdicts)
	return c
}

// compared is metric m of job k in rep.
func compared(rep *Report, k jobKey, m metric) ComparedValue {
	res, ok := rep.find(k.backend, k.kind, k.size)
	if !ok {
		return ComparedValue{}
	}
	vs := m.values(res)
	return ComparedValue{OK: true, Median: m.get(res), Spread: spreadOf(vs).Percent, Repeats: len(vs)}
}

// assess says whether the change of row is beyond the noise the repeats
// show; with a single repeat on either side nothing can be said.
func assess(row ComparisonRow, lowerIsBetter bool) string {
	if row.Before.Repeats < 2 || row.After.Repeats < 2 {
		return ""
	}
	if math.Abs(row.Change) <= max(row.Before.Spread, row.After.Spread) {
		return "within spread"
	}
	if (row.Change < 0) == lowerIsBetter {
		return "better"
	}
	return "worse"
}

// compareVerdicts pairs the verdicts of two reports by target and size.
func compareVerdicts(before, after []Verdict) []VerdictChange {
	var out []VerdictChange
	index := map[string]int{}
	add := func(v Verdict, isAfter bool) {
		k := fmt.Sprintf("%s@%d", v.Target, v.Size)
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, VerdictChange{Target: v.Target, Size: v.Size})
		}
		if isAfter {
			out[i].After = &v
		} else {
			out[i].Before = &v
		}
	}
	for _, v := range after {
		add(v, true)
	}
	for _, v := range before {
		add(v, false)
	}
	return out
}

// WriteComparison writes the before/after tables of two reports.
func WriteComparison(w io.Writer, before, after *Report) error {
	c := Compare(before, after)
	p := &printer{w: w}
	p.printf("Before/after: %s (load average %s) → %s (load average %s)\n",
		before.Machine.Date, before.Machine.LoadAvg, after.Machine.Date, after.Machine.LoadAvg)
	p.printf("medians of the repeats; spread: (max-min)/median; rtt: lower is better, msgs/s: higher\n")
	tw := tabwriter.NewWriter(p, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "transport\tsize\tmetric\tbefore\tafter\tchange\tspread before\tspread after\t")
	for _, row := range c.Rows {
		change := "-"
		if !math.IsNaN(row.Change) {
			change = fmt.Sprintf("%+.1f%%", row.Change)
			if row.Assessment != "" {
				change += " " + row.Assessment
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.Backend, FormatSize(row.Size), row.Metric,
			row.Before.text(row.format), row.After.text(row.format), change, row.Before.spreadText(), row.After.spreadText())
	}
	p.flush(tw)
	if len(c.Verdicts) > 0 {
		p.printf("\nTargets, before → after\n")
		tw = tabwriter.NewWriter(p, 2, 8, 2, ' ', 0)
		for _, v := range c.Verdicts {
			fmt.Fprintf(tw, "%s @%s\t%s\t→ %s\t\n", v.Target, FormatSize(v.Size), verdictCell(v.Before), verdictCell(v.After))
		}
		p.flush(tw)
	}
	return p.err
}

func (v ComparedValue) text(format func(float64) string) string {
	if !v.OK {
		return "-"
	}
	return format(v.Median)
}

func (v ComparedValue) spreadText() string {
	if !v.OK || v.Repeats < 2 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% of %d", v.Spread, v.Repeats)
}

// verdictCell is a verdict's status and ratio in a few characters.
func verdictCell(v *Verdict) string {
	switch {
	case v == nil:
		return "-"
	case v.Status == StatusNA:
		return string(StatusNA)
	case v.Status == StatusNoisy:
		return fmt.Sprintf("%s %.2f× (medians %s)", v.Status, v.Ratio, v.Medians)
	}
	return strings.TrimSpace(fmt.Sprintf("%s %.2f×", v.Status, v.Ratio))
}
