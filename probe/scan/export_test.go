package scan

import "context"

// Wiring and ScanConn run the scanner on a network of the test's
// (probetest.Conn, a fake ring), without a client.
type Wiring = wiring

func ScanConn(ctx context.Context, conn Conn, cfg Config, w Wiring) (Summary, error) {
	return scanConn(ctx, conn, cfg, w)
}
