package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/podipc/podipc/internal/mqbroker"
)

// maxTerminationMessage is the kubelet's bound on a container's termination
// message; it keeps the first 4096 bytes of a longer one.
const maxTerminationMessage = 4096

// drainReport is what the broker held when it stopped: the messages a pod's
// deletion keeps (journaled queues: the next sidecar on the same volume
// recovers them; on a deleted pod's emptyDir they go with it) and the ones it
// loses (the rest), for the log and the termination message.
type drainReport struct {
	duration time.Duration
	err      error
	queues   []queueDrain
}

type queueDrain struct {
	name      string
	waiting   int // delivered to nobody yet
	inFlight  int // delivered, unacknowledged
	journaled bool
}

func newDrainReport(stats []mqbroker.QueueStats, duration time.Duration, err error) drainReport {
	r := drainReport{duration: duration, err: err}
	for _, s := range stats {
		r.queues = append(r.queues, queueDrain{
			name:      s.Name,
			waiting:   s.Depth,
			inFlight:  s.InFlight,
			journaled: s.Config.Persistence == mqbroker.Volume,
		})
	}
	return r
}

// unjournaled counts the messages that were in queues without a journal.
func (r drainReport) unjournaled() int {
	n := 0
	for _, q := range r.queues {
		if !q.journaled {
			n += q.waiting + q.inFlight
		}
	}
	return n
}

// log writes one line per queue that still held messages and a summary.
func (r drainReport) log(log *slog.Logger) {
	for _, q := range r.queues {
		if q.waiting+q.inFlight == 0 {
			continue
		}
		if q.journaled {
			log.Info("queue stopped holding messages; they are in its journal", "queue", q.name, "waiting", q.waiting, "inFlight", q.inFlight)
		} else {
			log.Warn("queue stopped holding messages and has no journal; they are lost with this sidecar", "queue", q.name, "waiting", q.waiting, "inFlight", q.inFlight)
		}
	}
	if r.err != nil {
		log.Error("shutdown incomplete", "err", r.err, "duration", r.duration, "unjournaledMessages", r.unjournaled())
		return
	}
	log.Info("shutdown complete", "duration", r.duration, "queues", len(r.queues), "unjournaledMessages", r.unjournaled())
}

// message is the termination message: the outcome on the first line, then
// one line per queue, cut to what the kubelet keeps.
func (r drainReport) message() string {
	var b strings.Builder
	if r.err != nil {
		fmt.Fprintf(&b, "shutdown incomplete after %s: %v\n", r.duration.Round(time.Millisecond), r.err)
	} else {
		fmt.Fprintf(&b, "clean shutdown in %s; %d unjournaled messages lost\n", r.duration.Round(time.Millisecond), r.unjournaled())
	}
	for _, q := range r.queues {
		kept := "no journal"
		if q.journaled {
			kept = "journaled"
		}
		line := fmt.Sprintf("queue %s: %d waiting, %d in flight (%s)\n", q.name, q.waiting, q.inFlight, kept)
		if b.Len()+len(line) > maxTerminationMessage {
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

// writeTerminationMessage writes msg to path, the file the kubelet reads the
// container's termination message from, if it exists; outside Kubernetes
// (no such file) it does nothing. It never creates a file and never follows
// a symbolic link.
func writeTerminationMessage(path, msg string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("termination message: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("termination message: %s is not a regular file", path)
	}
	_, err = f.WriteString(msg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("termination message: %w", err)
	}
	return nil
}
