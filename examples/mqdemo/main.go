// Command mqdemo shows podipc's message queues end to end: a broker, a
// producer and a consumer, each in its own process, talking over the broker's
// Unix socket.
//
//	mqdemo broker  -dir /tmp/podipc           # serves queue "demo" (journaled)
//	mqdemo produce -dir /tmp/podipc -n 10     # sends 10 messages
//	mqdemo consume -dir /tmp/podipc -n 10     # receives and acknowledges them
//
// The client side finds the socket through $PODIPC_DIR when -dir is empty,
// as applications in an injected pod do.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/podipc/podipc/pkg/podcontract"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/pkg/mq"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mqdemo broker|produce|consume [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", os.Getenv(podcontract.EnvDir), "podipc directory holding the socket (and the journal)")
	queue := fs.String("queue", "demo", "queue name")
	n := fs.Int("n", 10, "messages to send or receive")
	fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	switch os.Args[1] {
	case "broker":
		err = runBroker(ctx, log, *dir, *queue)
	case "produce":
		err = produce(ctx, *dir, *queue, *n)
	case "consume":
		err = consume(ctx, *dir, *queue, *n)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Error("mqdemo failed", "err", err)
		os.Exit(1)
	}
}

func runBroker(ctx context.Context, log *slog.Logger, dir, queue string) error {
	if dir == "" {
		return errors.New("-dir or $PODIPC_DIR is required")
	}
	b, err := mqbroker.New(mqbroker.Options{JournalDir: filepath.Join(dir, "mq-journal"), Logger: log})
	if err != nil {
		return err
	}
	cfg := []mqbroker.QueueConfig{
		{Name: queue, Persistence: mqbroker.Volume, MaxRedeliveries: 3, DeadLetterQueue: queue + ".dead"},
		{Name: queue + ".dead"},
	}
	if err := b.Apply(ctx, cfg); err != nil {
		return err
	}
	ln, err := mqbroker.Listen(podcontract.MQSocketPath(dir), 0)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Shutdown(shutdownCtx)
	}()
	return b.Serve(ln)
}

func dial(ctx context.Context, dir string) (*mq.Client, error) {
	var opts []mq.DialOption
	if dir != "" {
		opts = append(opts, mq.WithSocketPath(podcontract.MQSocketPath(dir)))
	}
	return mq.Dial(ctx, opts...)
}

func produce(ctx context.Context, dir, queue string, n int) error {
	c, err := dial(ctx, dir)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range n {
		body := fmt.Sprintf("message %d", i)
		if err := c.Send(ctx, queue, []byte(body), mq.WithPriority(uint8(i%3))); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
		fmt.Println("sent", body)
	}
	return nil
}

func consume(ctx context.Context, dir, queue string, n int) error {
	c, err := dial(ctx, dir)
	if err != nil {
		return err
	}
	defer c.Close()
	k, err := c.Consume(ctx, queue, mq.WithPrefetch(16))
	if err != nil {
		return err
	}
	for range n {
		d, err := k.Receive(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("received %q (priority %d, waited %v)\n", d.Body, d.Priority, time.Since(d.EnqueuedAt).Round(time.Microsecond))
		if err := d.Ack(ctx); err != nil {
			return err
		}
	}
	return c.Ping(ctx) // make sure the broker applied the last acks
}
