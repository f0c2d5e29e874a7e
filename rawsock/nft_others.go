//go:build !linux

package rawsock

// TablePrefix starts the name of every nftables table synprobe creates.
const TablePrefix = "synprobe_"

// GuardConfig describes what an RSTGuard drops. See the Linux
// documentation.
type GuardConfig struct {
	PortLo, PortHi uint16
	Ranges         []PortRange
	Mark           uint32
	NoOwner        bool
}

// RSTGuard is not implemented on this platform.
type RSTGuard struct{}

// NewRSTGuard is not implemented on this platform.
func NewRSTGuard(GuardConfig) (*RSTGuard, error) { return nil, errNotImplemented }

func (*RSTGuard) Owned() bool              { return false }
func (*RSTGuard) Table() string            { return "" }
func (*RSTGuard) Dropped() (uint64, error) { return 0, errNotImplemented }
func (*RSTGuard) Close() error             { return nil }

// CleanupTables is not implemented on this platform.
func CleanupTables() ([]string, error) { return nil, errNotImplemented }
