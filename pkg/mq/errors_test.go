package mq

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/podipc/podipc/internal/mqwire"
)

// TestErrorCodes holds the exported codes to the wire's, and every code to
// the sentinel a caller branches on.
func TestErrorCodes(t *testing.T) {
	cases := []struct {
		code ErrorCode
		wire mqwire.Code
		is   []error
	}{
		{CodeUnknownQueue, mqwire.CodeUnknownQueue, []error{ErrUnknownQueue}},
		{CodeQueueFull, mqwire.CodeQueueFull, []error{ErrQueueFull}},
		{CodeMessageTooLarge, mqwire.CodeMessageTooLarge, []error{ErrMessageTooLarge}},
		{CodeTooManyPending, mqwire.CodeTooManyPending, []error{ErrTooManyPending}},
		{CodeTimeout, mqwire.CodeTimeout, []error{ErrQueueFull, context.DeadlineExceeded}},
		{CodeBadRequest, mqwire.CodeBadRequest, []error{ErrProtocol}},
		{CodeShuttingDown, mqwire.CodeShuttingDown, []error{ErrBrokerShutdown}},
		{CodeTooManyConsumers, mqwire.CodeTooManyConsumers, []error{ErrTooManyConsumers}},
		{CodeQueueDeleted, mqwire.CodeQueueDeleted, []error{ErrQueueDeleted}},
		{CodeInternal, mqwire.CodeInternal, []error{ErrInternal}},
		{CodeDuplicateID, mqwire.CodeDuplicateID, []error{ErrProtocol}},
		{CodeVersion, mqwire.CodeVersion, []error{ErrUnsupportedVersion}},
		{CodeTooManyConns, mqwire.CodeTooManyConns, []error{ErrTooManyConnections}},
		{CodeHandshakeTimeout, mqwire.CodeHandshakeTimeout, []error{ErrProtocol}},
		{CodeWriteTimeout, mqwire.CodeWriteTimeout, []error{ErrInternal}},
	}
	seen := map[mqwire.Code]bool{}
	for _, c := range cases {
		if uint16(c.code) != uint16(c.wire) {
			t.Errorf("%v = %d, the wire says %d", c.code, uint16(c.code), uint16(c.wire))
		}
		seen[c.wire] = true
		err := brokerError(c.wire, "why")
		var be *BrokerError
		if !errors.As(err, &be) || be.Code != c.code {
			t.Errorf("brokerError(%v) = %#v, want a *BrokerError with code %v", c.wire, err, c.code)
		}
		if want := "mq broker: " + c.wire.String() + ": why"; err.Error() != want {
			t.Errorf("message %q, want %q", err.Error(), want)
		}
		for _, s := range c.is {
			if !errors.Is(err, s) {
				t.Errorf("code %v does not match %v", c.code, s)
			}
		}
	}
	// Every code the wire defines has its exported constant above: a new
	// code in mqwire without one fails here.
	for w := mqwire.Code(1); w.String() != "code "+strconv.Itoa(int(w)); w++ {
		if !seen[w] {
			t.Errorf("wire code %d (%v) has no exported ErrorCode", uint16(w), w)
		}
	}
}
