//go:build !linux

package rawsock

func holdPort(uint16, bool) (int, bool, error) { return -1, false, errNotImplemented }
func closePort(int) error                      { return nil }
func fdRoom() (int, error)                     { return 0, errNotImplemented }
