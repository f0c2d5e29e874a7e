package netlab

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
)

// Direction is the way a frame crosses a delay lab's forwarder.
type Direction uint8

const (
	// ToTarget: from the Prober namespace towards the Target.
	ToTarget Direction = iota
	// ToProber: from the Target namespace towards the Prober.
	ToProber
)

func (d Direction) String() string {
	if d == ToTarget {
		return "to-target"
	}
	return "to-prober"
}

// SeedEnv names the environment variable that, when set, replaces every
// Loss.Seed of zero: the seed a failed run logged replays its random drops.
const SeedEnv = "NETLAB_LOSS_SEED"

// Loss makes a delay lab's forwarder drop frames.
//
// Random drops come from one PCG stream per direction, seeded from Seed,
// so the n-th frame in a direction meets the same draw in every run with
// that seed: a run replays exactly when the frames themselves come in the
// same order (timers on both hosts decide that, so a replay is likely,
// not certain). A frame is one read from the link: a GSO frame carrying
// many TCP segments is kept or dropped whole.
type Loss struct {
	// ToTarget and ToProber are the probabilities (0 to 1) of dropping a
	// frame in each direction.
	ToTarget, ToProber float64
	// Seed seeds the random drops; 0 draws one (or takes $NETLAB_LOSS_SEED).
	// The lab logs the seed in use.
	Seed uint64
	// Drop, when set, sees every frame first, with the IP packet it
	// carries (nil for ARP and other non-IP frames), and drops it by
	// returning true. Calls are serialised, in forwarding order per
	// direction. A frame Drop keeps still meets the random drop.
	Drop func(dir Direction, ip []byte) bool
}

// LossStats counts the frames a delay lab's forwarder handled.
type LossStats struct {
	Forwarded [2]uint64 // frames passed on, by Direction
	Random    [2]uint64 // frames dropped by Loss's probabilities
	Hook      [2]uint64 // frames dropped by Loss.Drop
	Overflow  uint64    // frames dropped because a queue was full or a write failed
}

// Dropped returns every frame dropped on purpose (random or hook) in
// direction d.
func (s LossStats) Dropped(d Direction) uint64 { return s.Random[d] + s.Hook[d] }

func (s LossStats) String() string {
	return fmt.Sprintf("to target: %d forwarded, %d dropped at random, %d by the hook; to prober: %d, %d, %d; %d overflowed",
		s.Forwarded[ToTarget], s.Random[ToTarget], s.Hook[ToTarget],
		s.Forwarded[ToProber], s.Random[ToProber], s.Hook[ToProber], s.Overflow)
}

// dropper decides which frames a forwarder drops. It is separate from the
// sockets so that its decisions can be tested without privileges.
type dropper struct {
	mu    sync.Mutex
	loss  Loss
	seed  uint64
	rng   [2]*rand.Rand
	stats LossStats
}

// newDropper returns a dropper for l; the seed it uses is d.seed.
func newDropper(l Loss) (*dropper, error) {
	for _, p := range []float64{l.ToTarget, l.ToProber} {
		if !(p >= 0 && p <= 1) {
			return nil, fmt.Errorf("netlab: drop probability %v is not in [0, 1]", p)
		}
	}
	seed := l.Seed
	if seed == 0 {
		if s := os.Getenv(SeedEnv); s != "" {
			v, err := strconv.ParseUint(s, 0, 64)
			if err != nil || v == 0 {
				return nil, fmt.Errorf("netlab: $%s=%q is not a non-zero integer", SeedEnv, s)
			}
			seed = v
		}
	}
	for seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	d := &dropper{loss: l, seed: seed}
	for dir := range d.rng {
		// One stream per direction: the frames of one direction never
		// shift the draws of the other.
		d.rng[dir] = rand.New(rand.NewPCG(seed, uint64(dir)+0x6e65746c6162))
	}
	return d, nil
}

// drop decides the fate of one frame (virtio_net_hdr + Ethernet frame, as
// the forwarder reads it) travelling in direction dir, and counts it.
func (d *dropper) drop(dir Direction, frame []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.loss.ToTarget
	if dir == ToProber {
		p = d.loss.ToProber
	}
	// Draw for every frame, dropped by the hook or not, so the hook does
	// not shift the random stream.
	random := p > 0 && d.rng[dir].Float64() < p
	switch {
	case d.loss.Drop != nil && d.loss.Drop(dir, framePayload(frame)):
		d.stats.Hook[dir]++
		return true
	case random:
		d.stats.Random[dir]++
		return true
	}
	d.stats.Forwarded[dir]++
	return false
}

func (d *dropper) overflow() {
	d.mu.Lock()
	d.stats.Overflow++
	d.mu.Unlock()
}

func (d *dropper) snapshot() LossStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// vnetHdrLen is the size of struct virtio_net_hdr, which PACKET_VNET_HDR
// puts in front of every frame.
const vnetHdrLen = 10

// framePayload returns the IPv4 or IPv6 packet in a forwarder frame, or nil.
func framePayload(frame []byte) []byte {
	if len(frame) < vnetHdrLen+14 {
		return nil
	}
	eth := frame[vnetHdrLen:]
	typ, off := binary.BigEndian.Uint16(eth[12:]), 14
	if typ == 0x8100 && len(eth) >= 18 { // 802.1Q
		typ, off = binary.BigEndian.Uint16(eth[16:]), 18
	}
	if typ != 0x0800 && typ != 0x86dd {
		return nil
	}
	return eth[off:]
}
