package channelconfig

// The sidecar broker's bounds that are not a queue's: they are the one source
// of the values the sidecar passes to its broker (internal/sidecar/daemon)
// and of the memory the injector adds to the sidecar's limit for them
// (BrokerFixedBytes). They are constants, not flags, so that a sidecar can
// never run with bounds its injector did not budget for.
const (
	// BrokerMaxConnections bounds the broker's concurrent connections.
	BrokerMaxConnections = 128
	// BrokerMaxConnectionsPerUID bounds the connections of the processes of
	// one user (as the kernel reports the peer), so that one container
	// cannot take them all.
	BrokerMaxConnectionsPerUID = BrokerMaxConnections / 4
	// BrokerMaxBlockedSendBytes bounds the body bytes of the sends parked on
	// full Block queues, over every connection.
	BrokerMaxBlockedSendBytes = 16 << 20
	// BrokerConnectionBytes is the memory a connection keeps between frames
	// at most: its read buffer (64 KiB), the frame scratch buffer its reader
	// keeps (one frame of a 1 MiB message) and the two output buffers its
	// writer keeps (64 KiB each). pkg/channelconfig's tests hold it to
	// internal/mqconn and internal/mqwire.
	BrokerConnectionBytes = 64<<10 + (1<<20 + 4<<10) + 2*(64<<10)
)

// BrokerFixedBytes is the sidecar memory its broker needs whatever the
// queues: every connection's kept buffers and the parked sends. The queues'
// own bound is in their Footprint.
func BrokerFixedBytes() int64 {
	return BrokerMaxBlockedSendBytes + BrokerMaxConnections*BrokerConnectionBytes
}
