//go:build !linux

package main

// dropPrivileges: synprobe sends nothing on other systems (rawsock is
// Linux only), so there is nothing to drop.
func dropPrivileges(dropSpec) error { return nil }
