package harness

import "slices"

// summarize sorts samples (nanoseconds) and returns their statistics.
// Percentiles use the nearest-rank definition, as the C ring does: the
// p-th percentile is the smallest sample that is >= p% of the samples.
func summarize(samples []int64) *RTTStats {
	if len(samples) == 0 {
		return &RTTStats{}
	}
	slices.Sort(samples)
	var sum int64
	for _, s := range samples {
		sum += s
	}
	n := len(samples)
	return &RTTStats{
		Samples: n,
		Min:     samples[0],
		Mean:    sum / int64(n),
		P50:     samples[nearestRank(n, 50, 100)],
		P99:     samples[nearestRank(n, 99, 100)],
		P999:    samples[nearestRank(n, 999, 1000)],
		Max:     samples[n-1],
	}
}

// nearestRank returns the index of the num/den percentile in n sorted
// samples: ceil(n*num/den) - 1.
func nearestRank(n, num, den int) int {
	return max((n*num+den-1)/den-1, 0)
}

// median returns the median of vs (the mean of the two middle values when
// their number is even); vs is not modified. It is 0 for no values.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread is how far a metric moved over a job's repeats.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Percent is (Max-Min)/Median in percent; 0 for a single repeat.
	Percent float64 `json:"percent"`
}

// spreadOf summarises the values of one metric over the repeats.
func spreadOf(vs []float64) Spread {
	if len(vs) == 0 {
		return Spread{}
	}
	s := Spread{Median: median(vs), Min: slices.Min(vs), Max: slices.Max(vs)}
	if s.Median != 0 {
		s.Percent = 100 * (s.Max - s.Min) / s.Median
	}
	return s
}

// metric is one figure of a result that the report takes medians and
// spreads of.
type metric struct {
	// name is the metric's JSON name, as in RTTStats or ThroughputStats.
	name string
	get  func(Result) float64
}

func p50(r Result) float64      { return float64(r.RTT.P50) }
func msgsPerS(r Result) float64 { return r.Throughput.MsgsPerS }
func gbPerS(r Result) float64   { return r.Throughput.GBPerS }

// rttMetrics and throughputMetrics are the figures of each kind of job,
// in report order.
var (
	rttMetrics = []metric{
		{"p50_ns", p50},
		{"p99_ns", func(r Result) float64 { return float64(r.RTT.P99) }},
		{"p999_ns", func(r Result) float64 { return float64(r.RTT.P999) }},
		{"mean_ns", func(r Result) float64 { return float64(r.RTT.Mean) }},
		{"min_ns", func(r Result) float64 { return float64(r.RTT.Min) }},
		{"max_ns", func(r Result) float64 { return float64(r.RTT.Max) }},
		{"samples", func(r Result) float64 { return float64(r.RTT.Samples) }},
	}
	throughputMetrics = []metric{
		{"msgs_per_s", msgsPerS},
		{"gb_per_s", gbPerS},
		{"messages", func(r Result) float64 { return float64(r.Throughput.Messages) }},
		{"seconds", func(r Result) float64 { return r.Throughput.Seconds }},
	}
)

// metricsOf returns the metrics of a kind of job.
func metricsOf(k Kind) []metric {
	if k == KindRTT {
		return rttMetrics
	}
	return throughputMetrics
}

// values returns m's value in every repeat of res that holds a
// measurement.
func (m metric) values(res Result) []float64 {
	var vs []float64
	for _, rep := range res.repeats() {
		one := Result{Kind: res.Kind, RTT: rep.RTT, Throughput: rep.Throughput}
		if one.RTT != nil || one.Throughput != nil {
			vs = append(vs, m.get(one))
		}
	}
	return vs
}

// combine sets res's figures (RTT or Throughput) to the medians of its
// repeats, metric by metric, and its Spread to every metric's spread. A
// median of a percentile is not the percentile of all samples: each
// repeat's percentile is one observation of it.
func combine(res *Result) {
	res.Spread = map[string]Spread{}
	for _, m := range metricsOf(res.Kind) {
		if vs := m.values(*res); len(vs) > 0 {
			res.Spread[m.name] = spreadOf(vs)
		}
	}
	med := func(name string) float64 { return res.Spread[name].Median }
	switch res.Kind {
	case KindRTT:
		res.RTT = &RTTStats{
			Samples: int(med("samples")),
			Min:     int64(med("min_ns")),
			Mean:    int64(med("mean_ns")),
			P50:     int64(med("p50_ns")),
			P99:     int64(med("p99_ns")),
			P999:    int64(med("p999_ns")),
			Max:     int64(med("max_ns")),
		}
	case KindThroughput:
		res.Throughput = &ThroughputStats{
			Messages: int64(med("messages")),
			Seconds:  med("seconds"),
			MsgsPerS: med("msgs_per_s"),
			GBPerS:   med("gb_per_s"),
		}
	}
}
