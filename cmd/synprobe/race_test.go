//go:build race

package main

// raceEnabled: the race detector is on. It makes sync.Pool drop a quarter
// of what is put back, on purpose, so encoding/json's pooled buffers are
// allocated again and again: allocation counts mean nothing then.
const raceEnabled = true
