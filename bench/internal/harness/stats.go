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
