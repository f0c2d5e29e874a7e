//go:build !linux

package rawsock

type guardSys struct{}

func newRSTGuard(GuardConfig) (*RSTGuard, error) { return nil, errNotImplemented }
func (*RSTGuard) dropped() (uint64, error)       { return 0, errNotImplemented }
func (*RSTGuard) close() error                   { return nil }
func cleanupTables() ([]string, error)           { return nil, errNotImplemented }
