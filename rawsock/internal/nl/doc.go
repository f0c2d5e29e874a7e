// Package nl is rawsock's netlink client, shared by its route checks and
// the RST guard (rawsock/rstguard): sockets dialled through
// github.com/mdlayher/netlink with a bound on every wait, netfilter
// messages and their errors, and the error type of rawsock's failed
// system calls. Linux only.
package nl
