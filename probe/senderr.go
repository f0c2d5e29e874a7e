package probe

import (
	"errors"
	"syscall"
)

// Reasons of a probe this host could not send (StateError), from the send
// error. Each is decided on this host: the probe never left it.
const (
	// ReasonLocalFirewall: the host's output firewall (nftables,
	// iptables) dropped or rejected the probe (EPERM).
	ReasonLocalFirewall = "local-firewall"
	// ReasonLocalProhibit: a prohibit route, or a broadcast address
	// (EACCES).
	ReasonLocalProhibit = "local-prohibit"
	// ReasonLocalDiscarded: the kernel discarded it (EINVAL): a blackhole
	// route, or no room in the neighbour table for its next hop (an
	// on-link range bigger than the table, say).
	ReasonLocalDiscarded = "local-discarded"
	// ReasonLocalUnreachable: an unreachable route (EHOSTUNREACH).
	ReasonLocalUnreachable = "local-unreachable"
	// ReasonLocalNoRoute: no route, or a throw route (ENETUNREACH).
	ReasonLocalNoRoute = "local-no-route"
	// ReasonLocalTooBig: larger than the path allows (EMSGSIZE).
	ReasonLocalTooBig = "local-too-big"
	// ReasonLocalNoBuffers: the device queue stayed full (ENOBUFS).
	ReasonLocalNoBuffers = "local-no-buffers"
)

var sendErrnos = []struct {
	errno  syscall.Errno
	reason string
	text   string
}{
	{syscall.EPERM, ReasonLocalFirewall, "this host's output firewall dropped it"},
	{syscall.EACCES, ReasonLocalProhibit, "a prohibit route, or a broadcast address"},
	{syscall.EINVAL, ReasonLocalDiscarded, "a blackhole route, or no room in the neighbour table for its next hop"},
	{syscall.EHOSTUNREACH, ReasonLocalUnreachable, "an unreachable route"},
	{syscall.ENETUNREACH, ReasonLocalNoRoute, "no route"},
	{syscall.EMSGSIZE, ReasonLocalTooBig, "larger than the path allows"},
	{syscall.ENOBUFS, ReasonLocalNoBuffers, "the device queue stayed full"},
}

// SendErrorReason names why a probe could not be sent, from its send
// error: one of the ReasonLocal constants, or ReasonSendError.
func SendErrorReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for _, e := range sendErrnos {
			if e.errno == errno {
				return e.reason
			}
		}
	}
	return ReasonSendError
}

// SendErrorText explains a reason of SendErrorReason in a few words.
func SendErrorText(reason string) string {
	for _, e := range sendErrnos {
		if e.reason == reason {
			return e.text
		}
	}
	return "the probe could not be sent"
}

// IsSendErrorReason reports whether reason is one SendErrorReason returns.
func IsSendErrorReason(reason string) bool {
	if reason == ReasonSendError {
		return true
	}
	for _, e := range sendErrnos {
		if e.reason == reason {
			return true
		}
	}
	return false
}

// TransientSendError reports whether a send error may go away by itself
// (a full device queue, a full neighbour table): the probe is worth
// sending again later.
func TransientSendError(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EINVAL)
}
