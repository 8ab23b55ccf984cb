package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podipc/podipc/internal/testkit"
	"github.com/podipc/podipc/pkg/channelconfig"
	"github.com/podipc/podipc/pkg/podcontract"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/podipc/podipc/pkg/mq"
)

// scrape fetches /metrics and parses it as the Prometheus text format.
func scrape(t *testing.T, s *sidecar) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// find returns the metric of the family with all the given labels.
func find(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	fam := families[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// metricValue is the value of a gauge or counter; the test fails if it is
// missing.
func metricValue(t *testing.T, s *sidecar, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(scrape(t, s), name, labels)
	if m == nil {
		t.Fatalf("no %s%v in /metrics", name, labels)
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	t.Fatalf("%s is neither a gauge nor a counter", name)
	return 0
}

// Traffic on a shared-memory channel and a queue shows in the metrics, read
// at scrape time from the channel header and the broker.
func TestMetricsReflectTraffic(t *testing.T) {
	dir := testkit.TmpfsDir(t)
	cfgPath := filepath.Join(t.TempDir(), "channels.yaml")
	writeConfig(t, cfgPath, cfgFrames+cfgJobs)
	s := startSidecar(t, dir, cfgPath)
	s.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ch, prod := openProducer(t, filepath.Join(channelsDir(dir), "frames"))
	cons, err := ch.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for range 5 {
		if err := prod.Send(ctx, []byte("frame")); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1024)
	for range 2 {
		if _, err := cons.Recv(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}

	client, err := mq.Dial(ctx, mq.WithSocketPath(podcontract.MQSocketPath(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for range 4 {
		if err := client.Send(ctx, "jobs", []byte("job")); err != nil {
			t.Fatal(err)
		}
	}
	d, err := client.Receive(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}

	frames := map[string]string{"channel": "frames"}
	jobs := map[string]string{"queue": "jobs"}
	s.eventually("the ack to be counted", func() bool {
		return metricValue(t, s, "podipc_mq_acked_messages_total", jobs) == 1
	})
	fams := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"podipc_shm_sent_messages_total", frames, 5},
		{"podipc_shm_received_messages_total", frames, 2},
		{"podipc_shm_depth", frames, 3},
		{"podipc_shm_capacity_slots", frames, 32},
		{"podipc_shm_slot_size_bytes", frames, 1024},
		{"podipc_shm_lost_messages_total", frames, 0},
		{"podipc_shm_repaired_slots_total", frames, 0},
		{"podipc_shm_peers", map[string]string{"channel": "frames", "role": "producer"}, 1},
		{"podipc_shm_peers", map[string]string{"channel": "frames", "role": "consumer"}, 1},
		{"podipc_mq_enqueued_messages_total", jobs, 4},
		{"podipc_mq_capacity_messages", jobs, 100},
		{"podipc_mq_redelivered_messages_total", jobs, 0},
		{"podipc_config_applied", nil, 1},
		{"podipc_channel_state", map[string]string{"channel": "jobs", "type": "MessageQueue", "state": "Ready"}, 1},
		{"podipc_channel_state", map[string]string{"channel": "jobs", "type": "MessageQueue", "state": "Failed"}, 0},
	} {
		m := find(fams, c.name, c.labels)
		if m == nil {
			t.Errorf("missing %s%v", c.name, c.labels)
			continue
		}
		got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The receiving consumer may have prefetched the rest: they are queued
	// or in flight, not gone.
	if q, f := find(fams, "podipc_mq_depth", jobs), find(fams, "podipc_mq_in_flight", jobs); q == nil || f == nil ||
		q.GetGauge().GetValue()+f.GetGauge().GetValue() != 3 {
		t.Errorf("podipc_mq_depth + podipc_mq_in_flight for jobs = %v + %v, want 3", q, f)
	}
	lat := find(fams, "podipc_mq_ack_latency_seconds", jobs)
	if lat == nil || lat.GetHistogram().GetSampleCount() != 1 || len(lat.GetHistogram().GetBucket()) == 0 {
		t.Errorf("podipc_mq_ack_latency_seconds{jobs} = %v", lat)
	}
	if fams["podipc_reconciles_total"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("reconcile or process metrics missing")
	}

	code, body := s.get("/healthz")
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

// The sidecar's broker runs with the bounds the injector budgets its memory
// limit for (channelconfig.BrokerFixedBytes), and shows them.
func TestBrokerBoundsAreTheInjectors(t *testing.T) {
	_, _, s := startReadySidecar(t, cfgJobs)
	b := s.snapshot().Broker
	if b == nil {
		t.Fatal("no broker in the snapshot")
	}
	if b.MaxConnections != channelconfig.BrokerMaxConnections || b.MaxConnectionsPerUID != channelconfig.BrokerMaxConnectionsPerUID ||
		b.MaxBlockedSendBytes != channelconfig.BrokerMaxBlockedSendBytes {
		t.Errorf("broker bounds: %d connections, %d per UID, %d parked bytes; the injector budgets for %d, %d and %d",
			b.MaxConnections, b.MaxConnectionsPerUID, b.MaxBlockedSendBytes,
			channelconfig.BrokerMaxConnections, channelconfig.BrokerMaxConnectionsPerUID, channelconfig.BrokerMaxBlockedSendBytes)
	}
	if got := metricValue(t, s, "podipc_mq_blocked_send_bytes_limit", nil); got != channelconfig.BrokerMaxBlockedSendBytes {
		t.Errorf("podipc_mq_blocked_send_bytes_limit = %v, want %d", got, channelconfig.BrokerMaxBlockedSendBytes)
	}
}
