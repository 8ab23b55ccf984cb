package mqbroker

import "errors"

// Errors a caller may branch on with errors.Is.
var (
	// ErrInvalidConfig: a QueueConfig (or a set of them) is invalid.
	ErrInvalidConfig = errors.New("mqbroker: invalid queue configuration")
	// ErrInvalidOptions: New was given Options it cannot honour.
	ErrInvalidOptions = errors.New("mqbroker: invalid options")
	// ErrShutdown: the broker was shut down (Apply and Serve after Shutdown).
	ErrShutdown = errors.New("mqbroker: shut down")
)
