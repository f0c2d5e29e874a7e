//go:build !linux

package probe

import "net/netip"

type netns struct{}

func currentNetNS() *netns                { return nil }
func (n *netns) do(fn func() error) error { return fn() }
func (n *netns) close()                   {}

// gettid returns 0: the engine's thread cannot be recognised.
func gettid() int { return 0 }

func localAddr(netip.Addr) error { return nil }
