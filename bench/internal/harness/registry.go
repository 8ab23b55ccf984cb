package harness

import (
	"golang.org/x/sys/unix"

	"github.com/podipc/podipc/internal/mqbroker"
	"github.com/podipc/podipc/pkg/shm"
)

// Names of the backends the verdicts compare.
const (
	nameCRing      = "cring"
	nameUnixStream = "unix-stream"
	nameShmSpin    = "shm-spin"
	nameShmBlock   = "shm-block"
	nameShmHybrid  = "shm-hybrid"
	nameShmZC      = "shm-zerocopy"
)

// Backends returns the benchmark's transport table, in report order. To add
// a transport, implement Transport (or Standalone) and add one line here.
func Backends() []Backend {
	return []Backend{
		{Name: nameCRing, About: "C busy-poll SPSC ring on /dev/shm, copy in and out (machine limit)", Standalone: cRing{}},
		{Name: nameShmSpin, About: "podipc shm Queue channels, WaitSpin, copy API (Send/Recv)", Transport: shmTransport{wait: shm.WaitSpin}},
		{Name: nameShmZC, About: "podipc shm Queue channels, WaitSpin, zero-copy API (Reserve/Commit, Borrow/Release)", Transport: shmTransport{wait: shm.WaitSpin, zeroCopy: true}},
		{Name: nameShmHybrid, About: "podipc shm Queue channels, WaitHybrid (default: spin 20µs, then futex), copy API", Transport: shmTransport{wait: shm.WaitHybrid}},
		{Name: nameShmBlock, About: "podipc shm Queue channels, WaitBlock (futex at once), copy API", Transport: shmTransport{wait: shm.WaitBlock}},
		{Name: nameCSpin, About: "podipc C client (libpodipc) on both sides, shm Queue channels, spin wait, copy API", Standalone: nativeClient{wait: "spin"}},
		{Name: nameCBlock, About: "podipc C client (libpodipc) on both sides, shm Queue channels, futex wait at once, copy API", Standalone: nativeClient{wait: "block"}},
		{Name: namePyCopy, About: "podipc Python client on both sides, shm Queue channels, spin wait, copy API (send/recv_into)", Standalone: nativeClient{python: true, wait: "spin", api: "copy"}},
		{Name: namePyZC, About: "podipc Python client on both sides, shm Queue channels, spin wait, zero-copy API (reserve/commit, borrow/release memoryviews)", Standalone: nativeClient{python: true, wait: "spin", api: "zerocopy"}},
		{Name: namePyMQ, About: "podipc Python mq client on both sides via a broker process: confirmed sends, acked deliveries (AtLeastOnce)", Standalone: nativeClient{python: true, wait: "block", api: "mq", setup: pyMQSetup}},
		{Name: "pipe", About: "two anonymous pipes, fixed-size framing", Transport: pipeTransport{}},
		{Name: nameUnixStream, About: "Unix domain socketpair, SOCK_STREAM, fixed-size framing", Transport: socketTransport{typ: unix.SOCK_STREAM}},
		{Name: "unix-seqpacket", About: "Unix domain socketpair, SOCK_SEQPACKET, one packet per message", Transport: socketTransport{typ: unix.SOCK_SEQPACKET}},
		{Name: "mqueue", About: "two POSIX message queues (mq_timedsend/mq_timedreceive)", Transport: mqueueTransport{}},
		{Name: nameMQAtLeastOnce, About: "podipc mq via a broker process: confirmed sends, acked deliveries (AtLeastOnce)", Transport: mqTransport{delivery: mqbroker.AtLeastOnce}},
		{Name: nameMQAtMostOnce, About: "podipc mq via a broker process: confirmed sends, no acks (AtMostOnce)", Transport: mqTransport{delivery: mqbroker.AtMostOnce}},
		{Name: nameNATS, About: "nats-server on loopback, nats.go: request/reply (rtt), core publish/subscribe (throughput)", Transport: natsTransport{}},
	}
}
