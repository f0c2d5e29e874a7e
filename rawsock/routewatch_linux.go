//go:build linux

package rawsock

import (
	"errors"
	"net"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

type routeWatchSys struct {
	conn *netlink.Conn
	done chan struct{}
}

// routeGroups are the rtnetlink groups whose changes can change a route
// lookup's answer.
var routeGroups = []uint32{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE,
	unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_IPV6_RULE,
}

func watchRoutes() (*RouteWatch, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, nl.Wrap("dial", err)
	}
	for _, g := range routeGroups {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			return nil, nl.Wrap("join group", err)
		}
	}
	w := &RouteWatch{routeWatchSys: routeWatchSys{conn: c, done: make(chan struct{})}}
	go w.follow()
	return w, nil
}

// follow moves the generation on at every notification, and at every
// error but the end (ENOBUFS: notifications were lost).
func (w *RouteWatch) follow() {
	defer close(w.done)
	for {
		_, err := w.conn.Receive()
		w.gen.Add(1)
		if err != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EBADF)) {
			return
		}
	}
}

func (w *RouteWatch) close() error {
	err := w.conn.Close()
	<-w.done
	return err
}
