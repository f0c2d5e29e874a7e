package rawsock

import (
	"net/netip"
	"sync/atomic"
)

// RouteWatch follows the kernel's notifications of changes to this host's
// links, addresses, routes and routing rules (rtnetlink), in the network
// namespace of the thread that opened it, for caches of what the routes
// decide (SourceFinder.Watch).
type RouteWatch struct {
	gen atomic.Uint64
	routeWatchSys
}

// WatchRoutes opens a RouteWatch; Close ends it.
func WatchRoutes() (*RouteWatch, error) { return watchRoutes() }

// Generation changes once a change is notified (or notifications were
// lost): a value computed from the routes before a Generation that is no
// longer current may be stale.
func (w *RouteWatch) Generation() uint64 { return w.gen.Load() }

// Close ends the watch.
func (w *RouteWatch) Close() error { return w.close() }

// sourceCache keeps the sources a SourceFinder found while its watch's
// generation stays the same.
type sourceCache struct {
	gen uint64
	m   map[netip.Addr]netip.Addr
}

// maxCachedSources bounds a SourceFinder's cache: beyond, it starts over.
const maxCachedSources = 1 << 16

// cached returns dst's source if the cache has it for generation gen.
// The finder's mu is held.
func (c *sourceCache) cached(gen uint64, dst netip.Addr) (netip.Addr, bool) {
	if c.gen != gen || c.m == nil {
		c.gen, c.m = gen, nil
		return netip.Addr{}, false
	}
	src, ok := c.m[dst]
	return src, ok
}

// keep records dst's source, found while the generation was gen.
func (c *sourceCache) keep(gen uint64, dst, src netip.Addr) {
	if c.gen != gen {
		c.gen, c.m = gen, nil
	}
	if c.m == nil || len(c.m) >= maxCachedSources {
		c.m = make(map[netip.Addr]netip.Addr)
	}
	c.m[dst] = src
}
