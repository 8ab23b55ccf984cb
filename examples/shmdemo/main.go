// Command shmdemo shows two processes talking over a podipc shared-memory
// channel with no sidecar: it creates a Queue channel (and a small reply
// channel) in a fresh directory on /dev/shm, starts itself twice as a
// producer and a consumer, and the producer prints live throughput for the
// first half of the run and round-trip latency for the second.
//
//	go run ./examples/shmdemo [-duration 3s] [-size 64]
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/podipc/podipc/pkg/shm"
)

const (
	kindData byte = iota // throughput phase
	kindPing             // latency phase: the consumer echoes it
	kindStop             // end of the run

	headerLen  = 9 // kind byte + int64 send time
	reportEach = 250 * time.Millisecond
)

func main() {
	role := flag.String("role", "", "internal: producer or consumer (empty: run both as child processes)")
	dir := flag.String("dir", "", "internal: directory holding the channels")
	duration := flag.Duration("duration", 3*time.Second, "how long the producer runs")
	size := flag.Int("size", 64, "message size in bytes (>= 9)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *size < headerLen {
		*size = headerLen
	}
	var err error
	switch *role {
	case "":
		err = orchestrate(*duration, *size)
	case "producer":
		err = produce(*dir, *duration, *size)
	case "consumer":
		err = consume(*dir, *size)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		log.Error("shmdemo failed", "role", *role, "err", err)
		os.Exit(1)
	}
}

func orchestrate(duration time.Duration, size int) error {
	dir, err := os.MkdirTemp("/dev/shm", "podipc-demo-")
	if err != nil {
		dir, err = os.MkdirTemp("", "podipc-demo-")
		if err != nil {
			return err
		}
		fmt.Printf("note: /dev/shm unavailable, using %s (may not be a tmpfs)\n", dir)
	}
	defer func() { _ = os.RemoveAll(dir) }()

	data, err := shm.Create(filepath.Join(dir, "data"), shm.Options{SlotSize: size, SlotCount: 1024})
	if err != nil {
		return err
	}
	defer func() { _ = data.Close() }()
	reply, err := shm.Create(filepath.Join(dir, "reply"), shm.Options{SlotSize: headerLen, SlotCount: 16})
	if err != nil {
		return err
	}
	defer func() { _ = reply.Close() }()
	fmt.Printf("channels in %s: data (queue, %d slots of %d B), reply\n", dir, 1024, size)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := func(role string) (*exec.Cmd, error) {
		cmd := exec.Command(self, "-role", role, "-dir", dir, "-duration", duration.String(), "-size", fmt.Sprint(size))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd, cmd.Start()
	}
	consumer, err := start("consumer")
	if err != nil {
		return err
	}
	producer, err := start("producer")
	if err != nil {
		_ = consumer.Process.Kill()
		return err
	}
	perr, cerr := producer.Wait(), consumer.Wait()
	if err := errors.Join(perr, cerr); err != nil {
		return err
	}
	st := data.Stats()
	fmt.Printf("data channel stats: sent %d, received %d, depth %d, peers now %d\n",
		st.Sent, st.Received, st.Depth, st.Producers+st.Consumers)
	return nil
}

func openPair(dir string) (*shm.Channel, *shm.Channel, error) {
	data, err := shm.Open(filepath.Join(dir, "data"))
	if err != nil {
		return nil, nil, err
	}
	reply, err := shm.Open(filepath.Join(dir, "reply"))
	if err != nil {
		_ = data.Close()
		return nil, nil, err
	}
	return data, reply, nil
}

func produce(dir string, duration time.Duration, size int) error {
	data, reply, err := openPair(dir)
	if err != nil {
		return err
	}
	defer func() { _ = data.Close(); _ = reply.Close() }()
	p, err := data.NewProducer()
	if err != nil {
		return err
	}
	acks, err := reply.NewConsumer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Second)
	defer cancel()

	// Phase 1: throughput, zero-copy.
	end := time.Now().Add(duration / 2)
	var sent, lastSent uint64
	last := time.Now()
	for now := last; now.Before(end); sent++ {
		r, err := p.Reserve(ctx)
		if err != nil {
			return err
		}
		buf := r.Buf()
		buf[0] = kindData
		binary.LittleEndian.PutUint64(buf[1:], sent)
		if err := r.Commit(size); err != nil {
			return err
		}
		if sent%1024 == 0 {
			if now = time.Now(); now.Sub(last) >= reportEach {
				rate := float64(sent-lastSent) / now.Sub(last).Seconds()
				fmt.Printf("throughput  %10.0f msg/s  %8.1f MB/s\n", rate, rate*float64(size)/1e6)
				last, lastSent = now, sent
			}
		}
	}

	// Phase 2: round-trip latency, one message in flight.
	msg := make([]byte, size)
	ack := make([]byte, headerLen)
	var rtts []time.Duration
	end = time.Now().Add(duration / 2)
	last = time.Now()
	for time.Now().Before(end) {
		msg[0] = kindPing
		t0 := time.Now()
		if err := p.Send(ctx, msg); err != nil {
			return err
		}
		if _, err := acks.Recv(ctx, ack); err != nil {
			return err
		}
		rtts = append(rtts, time.Since(t0))
		if now := time.Now(); now.Sub(last) >= reportEach {
			slices.Sort(rtts)
			fmt.Printf("round trip  p50 %8v  p99 %8v  (%d pings)\n",
				rtts[len(rtts)/2], rtts[len(rtts)*99/100], len(rtts))
			rtts, last = rtts[:0], now
		}
	}
	msg[0] = kindStop
	return p.Send(ctx, msg)
}

func consume(dir string, size int) error {
	data, reply, err := openPair(dir)
	if err != nil {
		return err
	}
	defer func() { _ = data.Close(); _ = reply.Close() }()
	q, err := data.NewConsumer()
	if err != nil {
		return err
	}
	echo, err := reply.NewProducer()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var next, pings uint64
	for {
		m, err := q.Borrow(ctx)
		if err != nil {
			return err
		}
		b := m.Bytes()
		if len(b) != size {
			return fmt.Errorf("message of %d bytes, want %d", len(b), size)
		}
		switch b[0] {
		case kindData:
			if seq := binary.LittleEndian.Uint64(b[1:]); seq != next {
				return fmt.Errorf("message %d arrived when %d was due", seq, next)
			}
			next++
		case kindPing:
			pings++
			if err := echo.Send(ctx, b[:headerLen]); err != nil {
				return err
			}
		case kindStop:
			_ = m.Release()
			fmt.Printf("consumer: %d messages in order, %d pings echoed\n", next, pings)
			return nil
		}
		if err := m.Release(); err != nil {
			return err
		}
	}
}
