package mq

import (
	"context"
	"errors"

	"github.com/podipc/podipc/internal/mqwire"
)

// Errors a caller may branch on with errors.Is.
var (
	// ErrUnknownQueue: the broker has no queue of that name.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrQueueFull: the queue is full and its overflow policy is Reject (or
	// Block and the send's deadline passed, which also matches
	// context.DeadlineExceeded).
	ErrQueueFull = errors.New("queue full")
	// ErrMessageTooLarge: the body exceeds the queue's or broker's limit.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrTooManyPending: the connection exceeded its unconfirmed-send window.
	ErrTooManyPending = errors.New("too many pending sends")
	// ErrTooManyConsumers: the connection has as many consumers as allowed.
	ErrTooManyConsumers = errors.New("too many consumers")
	// ErrTooManyConnections: the broker refused the connection.
	ErrTooManyConnections = errors.New("too many connections")
	// ErrQueueDeleted: the queue was removed from the configuration.
	ErrQueueDeleted = errors.New("queue deleted")
	// ErrBrokerShutdown: the broker is shutting down.
	ErrBrokerShutdown = errors.New("broker shutting down")
	// ErrProtocol: the peer violated the wire protocol.
	ErrProtocol = errors.New("protocol error")
	// ErrUnsupportedVersion: client and broker share no protocol version.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrClosed: the client, consumer or connection is closed.
	ErrClosed = errors.New("closed")
	// ErrInternal: the broker failed (for example, writing its journal).
	ErrInternal = errors.New("broker internal error")
	// ErrStaleDelivery: the delivery came on a connection to the broker
	// that was lost since (the client reconnected); the broker redelivers
	// it, so it can be neither acknowledged nor rejected.
	ErrStaleDelivery = errors.New("delivery from a lost connection")
	// ErrInvalidArgument: a call's arguments are out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadySettled: the delivery was acknowledged or rejected already.
	ErrAlreadySettled = errors.New("delivery already acknowledged or rejected")
	// ErrImpostor: the broker's socket is served by a process of another user
	// than the sidecar's: some other container took the socket's place.
	ErrImpostor = errors.New("broker socket served by an impostor")
)

// ErrorCode is a protocol error code as the broker sends it
// (docs/mq-protocol.md, "Error codes"). Branch on the sentinel errors with
// errors.Is; the code is for logs, metrics and codes the sentinels merge
// (CodeTimeout and CodeQueueFull both match ErrQueueFull).
type ErrorCode uint16

// The broker's error codes.
const (
	CodeUnknownQueue     = ErrorCode(mqwire.CodeUnknownQueue)
	CodeQueueFull        = ErrorCode(mqwire.CodeQueueFull)
	CodeMessageTooLarge  = ErrorCode(mqwire.CodeMessageTooLarge)
	CodeTooManyPending   = ErrorCode(mqwire.CodeTooManyPending)
	CodeTimeout          = ErrorCode(mqwire.CodeTimeout)
	CodeBadRequest       = ErrorCode(mqwire.CodeBadRequest)
	CodeShuttingDown     = ErrorCode(mqwire.CodeShuttingDown)
	CodeTooManyConsumers = ErrorCode(mqwire.CodeTooManyConsumers)
	CodeQueueDeleted     = ErrorCode(mqwire.CodeQueueDeleted)
	CodeInternal         = ErrorCode(mqwire.CodeInternal)
	CodeDuplicateID      = ErrorCode(mqwire.CodeDuplicateID)
	CodeVersion          = ErrorCode(mqwire.CodeVersion)
	CodeTooManyConns     = ErrorCode(mqwire.CodeTooManyConns)
	CodeHandshakeTimeout = ErrorCode(mqwire.CodeHandshakeTimeout)
	CodeWriteTimeout     = ErrorCode(mqwire.CodeWriteTimeout)
)

// String names the code as the protocol documentation does.
func (c ErrorCode) String() string { return mqwire.Code(c).String() }

// BrokerError is an error reported by the broker. It matches the sentinel
// error of its code with errors.Is.
type BrokerError struct {
	// Code is the protocol error code.
	Code ErrorCode
	// Text is the broker's explanation.
	Text string
}

func (e *BrokerError) Error() string {
	if e.Text == "" {
		return "mq broker: " + e.Code.String()
	}
	return "mq broker: " + e.Code.String() + ": " + e.Text
}

// Unwrap returns the sentinel errors the code stands for.
func (e *BrokerError) Unwrap() []error {
	switch mqwire.Code(e.Code) {
	case mqwire.CodeUnknownQueue:
		return []error{ErrUnknownQueue}
	case mqwire.CodeQueueFull:
		return []error{ErrQueueFull}
	case mqwire.CodeTimeout:
		return []error{ErrQueueFull, context.DeadlineExceeded}
	case mqwire.CodeMessageTooLarge:
		return []error{ErrMessageTooLarge}
	case mqwire.CodeTooManyPending:
		return []error{ErrTooManyPending}
	case mqwire.CodeTooManyConsumers:
		return []error{ErrTooManyConsumers}
	case mqwire.CodeTooManyConns:
		return []error{ErrTooManyConnections}
	case mqwire.CodeQueueDeleted:
		return []error{ErrQueueDeleted}
	case mqwire.CodeShuttingDown:
		return []error{ErrBrokerShutdown}
	case mqwire.CodeVersion:
		return []error{ErrUnsupportedVersion}
	case mqwire.CodeBadRequest, mqwire.CodeDuplicateID, mqwire.CodeHandshakeTimeout:
		return []error{ErrProtocol}
	}
	return []error{ErrInternal}
}

func brokerError(code mqwire.Code, text string) error {
	return &BrokerError{Code: ErrorCode(code), Text: text}
}
