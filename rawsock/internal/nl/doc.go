// Package nl is rawsock's netlink client, shared by its route checks and
// the RST guard (rawsock/rstguard): sockets dialled through
// github.com/mdlayher/netlink with a bound on every wait, netfilter
// messages and their errors, the form of both packages' errors (OpError),
// and the names of the guard's tables. All of it but the last is Linux
// only.
package nl
