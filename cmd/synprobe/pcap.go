package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/synprobe/synprobe/internal/pcap"
	"sync/atomic"
	"time"
)

// pcapOut is the --pcap file of a run: every packet synprobe sends and
// receives, with the times it took them by (internal/pcap).
type pcapOut struct {
	*pcap.Writer
	f    *os.File
	name string
	done bool
}

// openPcap opens the --pcap file, if any. It is called once set-up is
// over, after the privileges are dropped (endSetup): the file is created
// with the credentials the run keeps (the user who ran sudo, -Z, nobody,
// or the caller of a setcap'd binary), so that synprobe writes only where
// that user may. Errors are bad input (exit 2), one line.
func openPcap(o *options) (*pcapOut, error) {
	if o.pcap == "" {
		return nil, nil
	}
	f, err := pcap.Create(o.pcap)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, usagef("--pcap %s: %v (written as uid %d, the user synprobe runs as once set up: give a directory that user may write in)", o.pcap, err, os.Getuid())
		}
		return nil, usagef("--pcap %s: %v", o.pcap, err)
	}
	w, err := pcap.NewWriter(f, "synprobe "+versionString())
	if err != nil {
		f.Close()
		return nil, &failure{fmt.Errorf("--pcap %s: %v", o.pcap, err)}
	}
	return &pcapOut{Writer: w, f: f, name: o.pcap}, nil
}

// close writes what waits and closes the file; nil-safe, once. Its error
// is a runtime failure (a full disk).
func (p *pcapOut) close() error {
	if p == nil || p.done {
		return nil
	}
	p.done = true
	err := p.Flush()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &failure{fmt.Errorf("--pcap %s: writing: %v", p.name, err)}
	}
	return nil
}

// laterRecorder is a probe.Recorder for a client opened before the
// capture file may be: a client opens its sockets with privileges, the
// file is opened as the user once they are dropped (openPcap). Packets
// recorded before set are dropped; the client sends none before its
// first probe.
type laterRecorder struct{ to atomic.Pointer[pcapOut] }

func (l *laterRecorder) set(p *pcapOut) { l.to.Store(p) }

func (l *laterRecorder) Sent(pkt []byte, id uint32, tx, at time.Time) {
	if p := l.to.Load(); p != nil {
		p.Sent(pkt, id, tx, at)
	}
}

func (l *laterRecorder) TxStamp(id uint32, tx time.Time) {
	if p := l.to.Load(); p != nil {
		p.TxStamp(id, tx)
	}
}

func (l *laterRecorder) Received(pkt []byte, rx, at time.Time) {
	if p := l.to.Load(); p != nil {
		p.Received(pkt, rx, at)
	}
}
