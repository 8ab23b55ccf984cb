// Command producer is an example application container: it sends to the
// pod's shared-memory channels and message queues, as set up by the podipc
// sidecar in $PODIPC_DIR, at a steady rate. Every message starts with its
// send time and a sequence number, so that the consumer can measure latency.
//
//	PODIPC_DIR=/dev/shm/podipc producer --shm frames,telemetry --mq detections
//
// Shared-memory messages are written in place: reserve a slot, write,
// commit (zero copy).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/podipc/podipc/examples/app/internal/appkit"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

type options struct {
	shm, queues  []string
	rate, mqRate int
	size         int
}

func main() {
	shmList := flag.String("shm", "frames,telemetry,events", "shared-memory channels to send to (comma-separated)")
	mqList := flag.String("mq", "detections,stats", "message queues to send to (comma-separated)")
	rate := flag.Int("rate", 20000, "messages per second to each shared-memory channel (0: as fast as possible)")
	mqRate := flag.Int("mq-rate", 2000, "messages per second to each queue (0: as fast as possible)")
	size := flag.Int("size", 256, "message size in bytes (at most each channel's slot size)")
	duration := flag.Duration("duration", 0, "stop after this long (0: run until SIGTERM or SIGINT)")
	flag.Parse()
	if *size < appkit.StampSize {
		fmt.Fprintf(os.Stderr, "producer: --size must be at least %d\n", appkit.StampSize)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	opts := options{shm: appkit.Names(*shmList), queues: appkit.Names(*mqList), rate: *rate, mqRate: *mqRate, size: *size}
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	dir, err := appkit.Dir()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var sent atomic.Uint64
	errs := make(chan error, len(opts.shm)+len(opts.queues))
	for _, name := range opts.shm {
		ch, err := appkit.OpenChannel(ctx, dir, name)
		if err != nil {
			return err
		}
		defer ch.Close()
		wg.Go(func() { errs <- sendShm(ctx, ch, opts, &sent) })
	}
	if len(opts.queues) > 0 {
		client, err := appkit.DialBroker(ctx, dir)
		if err != nil {
			return err
		}
		defer client.Close()
		for _, q := range opts.queues {
			wg.Go(func() { errs <- sendQueue(ctx, client, q, opts, &sent) })
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	fmt.Printf("producer: sent %d messages\n", sent.Load())
	return errors.Join(all...)
}

// sendShm writes stamped messages in place until ctx ends.
func sendShm(ctx context.Context, ch *shm.Channel, opts options, sent *atomic.Uint64) error {
	p, err := ch.NewProducer()
	if err != nil {
		return fmt.Errorf("%s: %w", ch.Path(), err)
	}
	defer p.Close()
	size := min(opts.size, ch.Options().SlotSize)
	if size < appkit.StampSize {
		return fmt.Errorf("%s: slot size %d cannot hold a %d-byte stamp", ch.Path(), size, appkit.StampSize)
	}
	err = appkit.Pace(ctx, opts.rate, func(seq uint64) error {
		r, err := p.Reserve(ctx)
		if err != nil {
			return err
		}
		appkit.Stamp(r.Buf()[:size], seq)
		if err := r.Commit(size); err != nil {
			return err
		}
		sent.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", ch.Path(), err)
	}
	return nil
}

// sendQueue sends stamped messages to queue until ctx ends.
func sendQueue(ctx context.Context, client *mq.Client, queue string, opts options, sent *atomic.Uint64) error {
	body := make([]byte, opts.size)
	err := appkit.Pace(ctx, opts.mqRate, func(seq uint64) error {
		appkit.Stamp(body, seq)
		if err := client.Send(ctx, queue, body); err != nil {
			return err
		}
		sent.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue %s: %w", queue, err)
	}
	return nil
}
