package mq

import (
	"fmt"
	"net"

	"github.com/podipc/podipc/internal/mqconn"
)

// checkBroker fails with ErrImpostor unless the process serving nc runs as
// uid (no check if uid is negative).
func checkBroker(nc net.Conn, uid int) error {
	if uid < 0 {
		return nil
	}
	cred, err := mqconn.PeerCred(nc)
	if err != nil {
		return fmt.Errorf("cannot tell who serves the broker socket: %w", err)
	}
	if int(cred.Uid) != uid {
		return fmt.Errorf("%w: served by pid %d as uid %d, the sidecar runs as uid %d", ErrImpostor, cred.Pid, cred.Uid, uid)
	}
	return nil
}
