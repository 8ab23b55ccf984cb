package harness

import (
	"context"
	"fmt"
	"time"
)

// The four loops below are the whole measured work of every Go transport.
// They do not allocate and call nothing but the Conn and the stamp helpers
// between their clock reads. time.Since on a Time taken once reads only the
// monotonic clock.

// pingSide is side A of an rtt job: it sends messages, each after the echo
// of the previous one, and records the timed round trips after the warm-up
// in samples (len(samples) == job.Samples, at least 1). It returns the
// number of samples taken. With a job.Budget, the warm-up ends after a tenth
// of it at the latest and the run, with fewer samples, once it is spent.
func pingSide(ctx context.Context, c Conn, job Job, samples []int64) (int, error) {
	msg := newMessage(job.Size)
	base := time.Now()
	warm, last := false, false
	n := 0
	for seq := 0; !last; seq++ {
		now := time.Since(base)
		warm = warm || seq >= job.Warmup || (job.Budget > 0 && now > job.Budget/10)
		last = warm && (n == len(samples)-1 || (job.Budget > 0 && now > job.Budget))
		var f uint32
		if last {
			f = flagLast
		}
		stamp(msg, uint64(seq), f)
		t0 := time.Since(base)
		if err := c.Send(ctx, msg); err != nil {
			return n, fmt.Errorf("send message %d: %w", seq, err)
		}
		reply, err := c.Recv(ctx)
		if err != nil {
			return n, fmt.Errorf("receive echo %d: %w", seq, err)
		}
		t1 := time.Since(base)
		err = checkStamps(reply, uint64(seq), job.Size)
		if rerr := c.Release(); err == nil {
			err = rerr
		}
		if err != nil {
			return n, err
		}
		if warm {
			samples[n] = int64(t1 - t0)
			n++
		}
	}
	return n, nil
}

// echoSide is side B of an rtt job: it returns every message to side A
// until the one flagged last.
func echoSide(ctx context.Context, c Conn, job Job) error {
	for seq := uint64(0); ; seq++ {
		msg, err := c.Recv(ctx)
		if err != nil {
			return fmt.Errorf("receive message %d: %w", seq, err)
		}
		if err := checkStamps(msg, seq, job.Size); err != nil {
			return err
		}
		last := flags(msg)&flagLast != 0
		if err := c.Send(ctx, msg); err != nil {
			return fmt.Errorf("echo message %d: %w", seq, err)
		}
		if err := c.Release(); err != nil {
			return fmt.Errorf("release message %d: %w", seq, err)
		}
		if last {
			return nil
		}
	}
}

// sendSide is side A of a throughput job: it streams Warmup messages, then
// more for job.Duration, and flags the final one.
func sendSide(ctx context.Context, c Conn, job Job) error {
	msg := newMessage(job.Size)
	// Reading the clock for every small message would cost more than the
	// transport's work; look every 256 messages.
	clockMask := uint64(255)
	if job.Size >= 64<<10 {
		clockMask = 0
	}
	var start time.Time
	last := false
	for seq := uint64(0); !last; seq++ {
		switch {
		case seq == uint64(job.Warmup):
			start = time.Now()
		case seq > uint64(job.Warmup) && seq&clockMask == 0:
			last = time.Since(start) >= job.Duration
		}
		var f uint32
		if last {
			f = flagLast
		}
		stamp(msg, seq, f)
		if err := c.Send(ctx, msg); err != nil {
			return fmt.Errorf("send message %d: %w", seq, err)
		}
	}
	return nil
}

// recvSide is side B of a throughput job: it checks every message and
// times those after the warm-up, up to the one flagged last. It returns the
// number of timed messages and the time they took.
func recvSide(ctx context.Context, c Conn, job Job) (int64, time.Duration, error) {
	sum := payloadSum(job.Size)
	verifyEvery := uint64(max(job.VerifyEvery, 1))
	warmup := uint64(job.Warmup)
	var first time.Time
	for seq := uint64(0); ; seq++ {
		msg, err := c.Recv(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("receive message %d: %w", seq, err)
		}
		if seq == warmup {
			first = time.Now()
		}
		err = checkStamps(msg, seq, job.Size)
		if err == nil && seq%verifyEvery == 0 {
			err = checkPayload(msg, seq, sum)
		}
		last := err == nil && flags(msg)&flagLast != 0
		if rerr := c.Release(); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, 0, err
		}
		if last {
			if seq <= warmup {
				return 0, 0, fmt.Errorf("stream ended at message %d, within the %d warm-up messages", seq, warmup)
			}
			return int64(seq - warmup), time.Since(first), nil
		}
	}
}
