package harness

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// pipeTransport is a pair of anonymous pipes (one per direction) with the
// kernel's default capacity, inherited by the peer.
type pipeTransport struct{}

func (pipeTransport) Setup(spec LinkSpec) (Link, error) {
	var ab, ba [2]int // [0] reads, [1] writes
	if err := unix.Pipe2(ab[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(ba[:], unix.O_CLOEXEC); err != nil {
		unix.Close(ab[0])
		unix.Close(ab[1])
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return &fileLink{
		own:  filesFromFDs("pipe-a", ba[0], ab[1]),
		peer: filesFromFDs("pipe-b", ab[0], ba[1]),
		open: func(own []*os.File) (Conn, error) {
			return newStreamConn(own[0], own[1], spec.Size), nil
		},
	}, nil
}

func (pipeTransport) Attach(spec LinkSpec, h Handoff) (Conn, error) {
	if err := wantFiles(h, 2); err != nil {
		return nil, err
	}
	return newStreamConn(h.Files[0], h.Files[1], spec.Size), nil
}
