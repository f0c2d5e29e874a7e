package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
)

// openPTY returns a new pseudo-terminal's two ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("pty slave: %v", err)
	}
	// Raw enough: no "\n" -> "\r\n" on output, so that lines are as written.
	if tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err == nil {
		tio.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// screenLines plays out on a terminal's lines what was written to it:
// "\r" goes back to the line's start, "\033[K" erases to its end, "\n"
// ends it. What a person would see, line by line.
func screenLines(out []byte) []string {
	var lines []string
	var line []byte
	col := 0
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case c == '\n':
			lines = append(lines, string(line))
			line, col = line[:0:0], 0
		case c == '\r':
			col = 0
		case c == 0x1b && bytes.HasPrefix(out[i:], []byte("\033[K")):
			line = line[:col]
			i += 2
		default:
			if col < len(line) {
				line[col] = c
			} else {
				line = append(line, c)
			}
			col++
		}
	}
	if len(line) > 0 {
		lines = append(lines, string(line))
	}
	return lines
}

func TestScreenLines(t *testing.T) {
	got := screenLines([]byte("\rscan: 1/2\033[K\r\033[Kopen a\nclosed b\n\rscan: 2/2, ETA 0.9 s\033[Kopen c\n"))
	want := []string{"open a", "closed b", "scan: 2/2, ETA 0.9 sopen c"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("screenLines = %q, want %q", got, want)
	}
}

// TestIntegrationScanTerminal: a scan with stdout and stderr on one
// terminal (a pty) shows its progress line while results come, and no
// result ever lands on the end of the progress line (issue 11: "… ETA
// 0.9 s^[[Kopen …").
func TestIntegrationScanTerminal(t *testing.T) {
	l := netlab.New(t)
	for _, p := range []int{22, 80, 443} {
		l.Listen(t, l.Target, "tcp", fmt.Sprintf("%v:%d", l.TargetV4, p))
	}
	master, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 4,000 pairs at 1,500 a second: results stream for over two
	// seconds, the progress line shows after the first.
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "scan", "--rate", "1500", "--retries", "0", "-w", "0.5", fmt.Sprintf("%v:1-4000", l.TargetV4))
	cmd.Stdout, cmd.Stderr, cmd.Stdin = slave, slave, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&out, master) // EIO once the last writer is gone
		close(done)
	}()
	err := cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		master.Close()
		<-done
	}
	if code := cmd.ProcessState.ExitCode(); code != exitOK {
		t.Fatalf("exit %d (%v):\n%s", code, err, out.String())
	}
	raw := out.Bytes()
	if !bytes.Contains(raw, []byte("\rscan: ")) {
		t.Fatalf("no progress line was drawn:\n%q", raw)
	}
	// The results, grouped by host at the end: the three open ports,
	// then the 3997 closed ones in one line.
	var results []string
	for _, line := range screenLines(raw) {
		if strings.HasPrefix(line, "open ") || strings.HasPrefix(line, "closed ") || strings.HasPrefix(line, "filtered ") {
			results = append(results, strings.Fields(line)[1])
		}
		if strings.Contains(line, "scan: ") && (strings.Contains(line, "open ") || strings.Contains(line, "closed ")) {
			t.Errorf("a result on the progress line: %q", line)
		}
	}
	a := l.TargetV4.String()
	if want := []string{a + ":22", a + ":80", a + ":443", a + ":1-21,23-79,81-442,444-4000"}; !slices.Equal(results, want) {
		t.Errorf("results on the terminal %q, want %q", results, want)
	}
}
