package harness

import (
	"strconv"

	"github.com/podipc/podipc/internal/mqbroker"
)

// namePyMQ is the backend of podipc's Python mq client on both sides.
const namePyMQ = "py-mq"

// pyMQFloor is the Python mq client's promise (issue 10): 64 B messages
// with confirmed sends and acknowledged deliveries at this many a second.
const pyMQFloor = 50_000

// pyMQ is the link of the py-mq backend (a nativeClient with api=mq): the
// broker of the Go mq transports, started in a third process by
// mqTransport's Setup with the same two AtLeastOnce queues, serving two
// Python peers (bench/pyclient/peer.py) that use podipc.mq as an
// application would, as the Go sides of mq-atleastonce use pkg/mq: each
// side sends to one queue and consumes the other, every send confirmed
// (a side waits for its confirmations before it receives; a streaming side
// keeps at most mqSendWindow in flight), every delivery acknowledged once
// checked, with a prefetch of mqPrefetch.
func pyMQSetup(spec LinkSpec) (Link, error) {
	l, err := mqTransport{delivery: mqbroker.AtLeastOnce}.Setup(spec)
	if err != nil {
		return nil, err
	}
	return pyMQLink{l}, nil
}

// pyMQLink is the broker, handed to the Python peers: the queues stand
// where a channel link has its channels (ab=, ba=), and peerArgs adds the
// socket and the client's settings.
type pyMQLink struct{ Link }

func (l pyMQLink) Handoff() Handoff {
	h := l.Link.Handoff()
	h.Params[paramAToB], h.Params[paramBToA] = mqQueueAToB, mqQueueBToA
	return h
}

// peerArgs are the native peers' arguments this link adds to the job's.
func (l pyMQLink) peerArgs() []string {
	return []string{
		"socket=" + l.Link.Handoff().Params[paramMQSocket],
		"prefetch=" + strconv.Itoa(mqPrefetch),
		"window=" + strconv.Itoa(mqSendWindow),
	}
}

// pyMQTargets are the Python mq client's promises: an absolute floor, not a
// ratio, checked like the others.
func pyMQTargets() []target {
	return []target{
		{name: "Python mq with acks 64 B throughput at least 50 000 msgs/s", subject: namePyMQ,
			kind: KindThroughput, size: 64, metric: msgsPerS, floor: pyMQFloor, unit: "msgs/s", limit: 1},
	}
}
