package rawsock

// KernelBacklog reports whether any of the kernel's per-CPU receive
// backlogs holds packets: packets an interface received (veth, loopback,
// RPS) that the stack has not processed yet, so that no socket, nor a
// packet ring, has them. On a machine short of CPU the stack's receive
// work waits in ksoftirqd with them. The backlogs are the host's, not a
// namespace's: other traffic keeps them busy too, so a caller that waits
// for them to empty must bound the wait. Off Linux, and on kernels before
// 5.10 (whose softnet_stat lacks the column), it reports false.
func KernelBacklog() bool { return kernelBacklog() }
