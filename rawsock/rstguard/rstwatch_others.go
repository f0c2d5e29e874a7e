//go:build !linux

package rstguard

import "github.com/synprobe/synprobe/rawsock"

func newWatch([]rawsock.PortRange, uint32) (*Watch, error) { return nil, errNotImplemented }
func (*Watch) drain()                                      {}
func (*Watch) close() error                                { return nil }
