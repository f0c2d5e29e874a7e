//go:build !linux

package cli

// DropPrivileges: synprobe sends nothing on other systems (rawsock is
// Linux only), so there is nothing to drop.
func DropPrivileges(DropSpec) error { return nil }
