package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// IsPeer reports whether this process was started as a benchmark peer:
// side B of a job, or the broker of the podipc mq transports.
// Binaries that run benchmarks (the tool, its tests) check it first thing
// in main or TestMain and then call PeerMain.
func IsPeer() bool {
	_, ok := os.LookupEnv(peerEnv)
	return ok || isBroker()
}

// PeerMain runs the role this process was started for (side B of a job, or
// an mq broker) and returns the process exit code.
func PeerMain() int {
	if isBroker() {
		return brokerMain()
	}
	ctrl := os.NewFile(3, "control")
	enc := json.NewEncoder(ctrl)
	msg, err := runPeer(ctrl, enc)
	if err != nil {
		msg = peerMsg{Error: err.Error()}
		if errors.Is(err, ErrUnavailable) {
			msg = peerMsg{Unavailable: err.Error()}
		}
	}
	if eerr := enc.Encode(msg); eerr != nil || err != nil {
		fmt.Fprintf(os.Stderr, "podipc-bench peer: %v\n", errors.Join(err, eerr))
		return 1
	}
	return 0
}

// runPeer attaches side B, reports ready, runs the job and returns the
// final report.
func runPeer(ctrl *os.File, enc *json.Encoder) (peerMsg, error) {
	var job Job
	if err := json.Unmarshal([]byte(os.Getenv(peerEnv)), &job); err != nil {
		return peerMsg{}, fmt.Errorf("decode job: %w", err)
	}
	backend, err := Lookup(job.Backend)
	if err != nil {
		return peerMsg{}, err
	}
	if backend.Transport == nil {
		return peerMsg{}, fmt.Errorf("transport %s has no Go peer side", job.Backend)
	}
	ctx, cancel := context.WithTimeout(context.Background(), job.timeout())
	defer cancel()
	// The coordinator closes the control socket when it gives up or dies;
	// stop waiting then instead of spinning until the timeout.
	go func() {
		_, _ = io.Copy(io.Discard, ctrl)
		cancel()
	}()

	files := make([]*os.File, job.Files)
	for i := range files {
		files[i] = os.NewFile(uintptr(firstHandoffFD+i), fmt.Sprintf("handoff-%d", i))
	}
	// Side B lives on the main goroutine, locked to its pinned thread until
	// the process exits.
	if err := pinThread(job.CPUs[1]); err != nil {
		return peerMsg{}, err
	}
	conn, err := backend.Transport.Attach(job.linkSpec(), Handoff{Files: files, Params: job.Params})
	if err != nil {
		return peerMsg{}, fmt.Errorf("attach side B: %w", err)
	}
	defer conn.Close()
	if err := enc.Encode(peerMsg{Ready: true}); err != nil {
		return peerMsg{}, fmt.Errorf("report ready: %w", err)
	}

	stopProfile, err := profileSide(job, "b")
	if err != nil {
		return peerMsg{}, err
	}
	defer stopProfile()
	done := peerMsg{Done: true}
	err = runTimed(backend.Transport, func() error {
		switch job.Kind {
		case KindRTT:
			return echoSide(ctx, conn, job)
		case KindThroughput:
			n, d, err := recvSide(ctx, conn, job)
			done.Messages, done.Nanos = n, d.Nanoseconds()
			return err
		}
		return fmt.Errorf("unknown kind %q", job.Kind)
	})
	return done, err
}
