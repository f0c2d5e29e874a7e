//go:build !linux

package rstguard

import (
	"fmt"
	"runtime"
)

type guardSys struct{}

func newGuard(Config) (*Guard, error)   { return nil, errNotImplemented }
func (*Guard) dropped() (uint64, error) { return 0, errNotImplemented }
func (*Guard) close() error             { return nil }
func cleanupTables() ([]string, error)  { return nil, errNotImplemented }

var errNotImplemented = fmt.Errorf("rawsock: not implemented on %s", runtime.GOOS)
