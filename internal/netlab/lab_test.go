package netlab

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	Serve(ln, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	})
	for i := range 3 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte{'a' + byte(i)}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1)
		if _, err := io.ReadFull(c, got); err != nil || got[0] != msg[0] {
			t.Fatalf("conn %d: got %q, %v", i, got, err)
		}
		c.Close()
	}
}
