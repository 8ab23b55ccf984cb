package bench

import "golang.org/x/sys/unix"

// Names of the backends the verdicts compare.
const (
	nameCRing      = "cring"
	nameUnixStream = "unix-stream"
	nameShmSpin    = "shm-spin"
	nameShmBlock   = "shm-block"
)

// Backends returns the benchmark's transport table, in report order. To add
// a transport, implement Transport (or Standalone) and add one line here.
func Backends() []Backend {
	return []Backend{
		{Name: nameCRing, About: "C busy-poll SPSC ring on /dev/shm, copy in and out (machine limit)", Standalone: cRing{}},
		{Name: "pipe", About: "two anonymous pipes, fixed-size framing", Transport: pipeTransport{}},
		{Name: nameUnixStream, About: "Unix domain socketpair, SOCK_STREAM, fixed-size framing", Transport: socketTransport{typ: unix.SOCK_STREAM}},
		{Name: "unix-seqpacket", About: "Unix domain socketpair, SOCK_SEQPACKET, one packet per message", Transport: socketTransport{typ: unix.SOCK_SEQPACKET}},
		{Name: "mqueue", About: "two POSIX message queues (mq_timedsend/mq_timedreceive)", Transport: mqueueTransport{}},
	}
}
