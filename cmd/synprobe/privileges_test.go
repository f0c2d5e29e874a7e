package main

import (
	"net/netip"
)

func (f *fakeSystem) realUID() int { return f.uid }

func (f *fakeSystem) getenv(key string) string { return f.env[key] }

func (f *fakeSystem) hostAddrs() ([]netip.Addr, error) {
	if f.addrs == nil {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")}, nil
	}
	return f.addrs, nil
}

func (f *fakeSystem) dropPrivileges(d dropSpec) error {
	f.drops = append(f.drops, d)
	f.events = append(f.events, "drop")
	return f.dropErr
}
