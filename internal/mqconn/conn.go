package mqconn

// ReadBufferSize is the size of the buffer each end of a connection reads
// frames through.
const ReadBufferSize = 64 << 10
