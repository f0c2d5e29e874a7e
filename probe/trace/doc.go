// Package trace finds where on the path a SYN is dropped, rejected or
// rewritten: synprobe trace (docs/trace.md).
//
// # Method
//
// Run sends SYNs from a probe.Client with rising TTLs, every one on the
// same 5-tuple (Paris traceroute's rule: load balancers hash the flow, so
// all probes take one path), each with its own ISN and IP ID by which
// the client matches the answers. A router whose TTL runs out answers
// ICMP time exceeded and quotes the SYN as it arrived there; Linux quotes
// it whole (up to 548 bytes over IPv4, 1232 over IPv6). Compare sets the
// quote against the SYN as sent, field by field, and a change first seen
// at hop k was made between the nearest earlier hop whose quote holds
// that field and hop k. (A router's rewrites in its forward hook show in
// the next router's quote, not its own.)
//
// # Limits
//
// A quote of 8 bytes of TCP (RFC 792's minimum) says nothing of the
// options, the window or the flags: Comparison.Level tells what a quote
// holds. A NAT translates the quotes of ICMP errors back (its conntrack
// rewrites the embedded header), so address and port translation does
// not show in quotes at all. Routers rate-limit ICMP errors: Linux sends
// about one per second to each source after a burst of six, which
// Config.Interval respects per hop.
package trace
