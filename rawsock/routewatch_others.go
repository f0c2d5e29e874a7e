//go:build !linux

package rawsock

type routeWatchSys struct{}

func watchRoutes() (*RouteWatch, error) { return nil, errNotImplemented }
func (w *RouteWatch) close() error      { return nil }
