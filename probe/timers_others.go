//go:build !linux

package probe

func preciseTimers() {}
