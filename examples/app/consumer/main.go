// Command consumer is an example application container: it receives from the
// pod's shared-memory channels and message queues, as set up by the podipc
// sidecar in $PODIPC_DIR, and prints each channel's throughput and latency
// once a second. Messages carry their send time (see the producer), so the
// latency is end to end: from the producer's clock read to the consumer's.
//
//	PODIPC_DIR=/dev/shm/podipc consumer --shm frames,telemetry --mq detections
//
// Shared-memory messages are borrowed in place (zero copy) and released;
// queue messages are acknowledged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/podipc/podipc/examples/app/internal/appkit"
	"github.com/podipc/podipc/pkg/mq"
	"github.com/podipc/podipc/pkg/shm"
)

func main() {
	shmList := flag.String("shm", "frames,telemetry,events", "shared-memory channels to receive from (comma-separated)")
	mqList := flag.String("mq", "detections,stats", "message queues to consume (comma-separated)")
	duration := flag.Duration("duration", 0, "stop after this long (0: run until SIGTERM or SIGINT)")
	interval := flag.Duration("interval", time.Second, "how often to print the figures")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := run(ctx, appkit.Names(*shmList), appkit.Names(*mqList), *interval); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, shmNames, queues []string, interval time.Duration) error {
	dir, err := appkit.Dir()
	if err != nil {
		return err
	}
	var meter appkit.Meter
	var wg sync.WaitGroup
	errs := make(chan error, len(shmNames)+len(queues))
	for _, name := range shmNames {
		ch, err := appkit.OpenChannel(ctx, dir, name)
		if err != nil {
			return err
		}
		defer ch.Close()
		mode := "Queue"
		if ch.Options().Mode == shm.ModeBroadcast {
			mode = "Broadcast"
		}
		m := meter.Add(fmt.Sprintf("shm %-10s %s", name, mode))
		wg.Go(func() { errs <- receiveShm(ctx, ch, m) })
	}
	if len(queues) > 0 {
		client, err := appkit.DialBroker(ctx, dir)
		if err != nil {
			return err
		}
		defer client.Close()
		for _, q := range queues {
			m := meter.Add(fmt.Sprintf("mq  %-10s", q))
			wg.Go(func() { errs <- consumeQueue(ctx, client, q, m) })
		}
	}
	wg.Go(func() { meter.Report(ctx, os.Stdout, interval) })
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// borrower is what Consumer and Subscriber have in common.
type borrower interface {
	Borrow(ctx context.Context) (shm.Message, error)
	Close() error
}

// receiveShm borrows messages in place until ctx ends.
func receiveShm(ctx context.Context, ch *shm.Channel, m appkit.Channel) error {
	var r borrower
	var err error
	if ch.Options().Mode == shm.ModeBroadcast {
		r, err = ch.Subscribe()
	} else {
		r, err = ch.NewConsumer()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ch.Path(), err)
	}
	defer r.Close()
	for {
		msg, err := r.Borrow(ctx)
		var lapped *shm.LappedError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &lapped):
			m.Lost(lapped.Lost)
			continue
		case err != nil:
			return fmt.Errorf("%s: %w", ch.Path(), err)
		}
		size := len(msg.Bytes())
		latency, stamped := appkit.Latency(msg.Bytes())
		if err := msg.Release(); errors.As(err, &lapped) {
			// Overwritten while we read it: the bytes may be mixed.
			m.Lost(lapped.Lost)
			continue
		} else if err != nil {
			return fmt.Errorf("%s: release: %w", ch.Path(), err)
		}
		if stamped {
			m.Observe(size, latency)
		}
	}
}

// consumeQueue receives and acknowledges messages until ctx ends.
func consumeQueue(ctx context.Context, client *mq.Client, queue string, m appkit.Channel) error {
	c, err := client.Consume(ctx, queue, mq.WithPrefetch(256))
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		d, err := c.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("queue %s: %w", queue, err)
		}
		if latency, ok := appkit.Latency(d.Body); ok {
			m.Observe(len(d.Body), latency)
		}
		// A delivery of a connection lost to a sidecar restart cannot be
		// acknowledged any more; the broker redelivers it.
		if err := d.Ack(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, mq.ErrStaleDelivery) {
			return fmt.Errorf("queue %s: ack: %w", queue, err)
		}
	}
}
