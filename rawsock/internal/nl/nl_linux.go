//go:build linux

package nl

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Every netlink request rawsock makes goes through github.com/mdlayher/netlink
// (its Conn, its AttributeEncoder and AttributeDecoder) or, for routes and
// neighbours, github.com/jsimonetti/rtnetlink/v2, which stands on it: one
// codec, which checks every attribute's length and nesting. Every request
// waits at most Timeout for its answer.

// Timeout bounds the wait for the kernel's answer to one request.
const Timeout = 5 * time.Second

// Dial opens a netlink socket of protocol proto (NETLINK_ROUTE, ...)
// in the calling thread's network namespace, its reads and writes bounded
// by Timeout from now: for the sockets that serve one request or a few
// and are closed.
func Dial(proto int, cfg *netlink.Config) (*netlink.Conn, error) {
	c, err := netlink.Dial(proto, cfg)
	if err != nil {
		return nil, Wrap("dial", err)
	}
	if err := c.SetDeadline(time.Now().Add(Timeout)); err != nil {
		c.Close()
		return nil, Wrap("deadline", err)
	}
	return c, nil
}

// Wrap wraps an error of the netlink libraries as rawsock's other
// system call errors are: a *net.OpError holding an *os.SyscallError
// named op, around the kernel's errno when the kernel refused the request
// (so that errors.Is(err, os.ErrPermission) holds for EPERM), else around
// the library's error (os.ErrDeadlineExceeded after Timeout, say).
func Wrap(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Net == "rawsock" {
		return err
	}
	return OpError(op, KernelErrno(err))
}

// KernelErrno returns the errno inside an error of the netlink library,
// if it holds one, else err.
func KernelErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// NFMessage returns a netfilter request: the nfgenmsg header (family,
// NFNETLINK_V0, res_id in network byte order), then the attributes attrs
// encodes. nfnetlink's integer attributes are big-endian, so the encoder
// is.
func NFMessage(typ uint16, flags netlink.HeaderFlags, family uint8, resID uint16, attrs func(ae *netlink.AttributeEncoder)) (netlink.Message, error) {
	data := []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
	if attrs != nil {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		attrs(ae)
		b, err := ae.Encode()
		if err != nil {
			return netlink.Message{}, fmt.Errorf("rawsock: encode netlink attributes: %w", err)
		}
		data = append(data, b...)
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: data}, nil
}

// NFDecoder returns a decoder of a netfilter message's attributes (after
// its nfgenmsg), big-endian as nfnetlink's integers are.
func NFDecoder(m netlink.Message) (*netlink.AttributeDecoder, error) {
	if len(m.Data) < sizeofNfgenmsg {
		return nil, errMalformed
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[sizeofNfgenmsg:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

const sizeofNfgenmsg = 4 // struct nfgenmsg

// errMalformed is a netfilter message too short for its header.
var errMalformed = errors.New("rawsock: malformed netlink message")

// NFConn is a NETLINK_NETFILTER socket that stays open: the RST guard's,
// whose closing deletes an owned table, and the log group's. It sends
// requests with sequence numbers of its own and reads the answers to
// them, skipping any others. It is not safe for concurrent use.
type NFConn struct {
	// Conn is the socket, for the log group's reader, which sets its
	// options and reads it in a loop of its own.
	Conn   *netlink.Conn
	seq    uint32
	broken error // set once an answer may have been left unread
}

// DialNetfilter opens a netfilter socket in the calling thread's network
// namespace. mdlayher/netlink opens it with SOCK_CLOEXEC, which matters: a
// child that inherited the socket would keep an owned table alive after
// we exit.
func DialNetfilter() (*NFConn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, Wrap("dial", err)
	}
	// The kernel's error text in its answers; optional. (Not
	// NETLINK_CAP_ACK: the library then looks for that text past the end
	// of the answer, and loses the error number with it.)
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	var b [4]byte
	rand.Read(b[:])
	return &NFConn{Conn: c, seq: 1 + binary.NativeEndian.Uint32(b[:])>>2}, nil
}

// Close closes the socket.
func (c *NFConn) Close() { c.Conn.Close() }

// NextSeq reserves n sequence numbers and returns the first; never 0,
// which the library would replace.
func (c *NFConn) NextSeq(n int) uint32 {
	if c.seq > 1<<31 {
		c.seq = 1
	}
	s := c.seq
	c.seq += uint32(n)
	return s
}

// Send sends msgs in one datagram, their sequence numbers set from seq on.
func (c *NFConn) Send(seq uint32, msgs ...netlink.Message) error {
	if c.broken != nil {
		return c.broken
	}
	for i := range msgs {
		msgs[i].Header.Sequence = seq + uint32(i)
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(Timeout)); err != nil {
		return Wrap("deadline", err)
	}
	if _, err := c.Conn.SendMessages(msgs); err != nil {
		return Wrap("sendmsg", err)
	}
	return nil
}

// Answer is one message of the kernel's answer to a request: a reply,
// an acknowledgement (errno 0), or an error with the kernel's text.
type Answer struct {
	M     netlink.Message // its header's Sequence is set in any case
	Errno unix.Errno
	Text  string
}

// Receive reads the kernel's answers with sequence numbers in [lo, hi]
// and passes them to fn until fn reports done; answers to earlier
// requests are skipped. It gives up after Timeout, and the socket is
// then out of step: every later request on it fails.
func (c *NFConn) Receive(lo, hi uint32, fn func(a Answer) (done bool, err error)) error {
	if c.broken != nil {
		return c.broken
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(Timeout)); err != nil {
		return Wrap("deadline", err)
	}
	for {
		msgs, err := c.Conn.Receive()
		var answers []Answer
		var oe *netlink.OpError
		var errno unix.Errno
		switch {
		case errors.As(err, &oe) && oe.Sequence != 0 && errors.As(oe.Err, &errno):
			// The kernel's error message: the library returns it as an
			// error, with the request's sequence number.
			answers = []Answer{{M: netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: oe.Sequence}}, Errno: errno, Text: oe.Message}}
		case err != nil:
			c.broken = Wrap("recvmsg", err)
			return c.broken
		}
		for _, m := range msgs {
			answers = append(answers, Answer{M: m})
		}
		for _, a := range answers {
			if s := a.M.Header.Sequence; s < lo || s > hi {
				continue
			}
			done, err := fn(a)
			if err != nil || done {
				return err
			}
		}
	}
}

// Request sends one request that asks for an acknowledgement and returns
// the kernel's error number for it (0: done).
func (c *NFConn) Request(m netlink.Message) (unix.Errno, string, error) {
	m.Header.Flags |= netlink.Request | netlink.Acknowledge
	seq := c.NextSeq(1)
	if err := c.Send(seq, m); err != nil {
		return 0, "", err
	}
	var errno unix.Errno
	var text string
	err := c.Receive(seq, seq, func(a Answer) (bool, error) {
		if a.M.Header.Type != netlink.Error {
			return false, nil
		}
		errno, text = a.Errno, a.Text
		return true, nil
	})
	return errno, text, err
}

// Dump sends a dump request and passes each message of the answer to fn.
// The library reads a dump's parts up to its end; an answer of no
// messages is an empty dump (the socket has no unread answers: receive
// leaves none, or marks the socket broken).
func (c *NFConn) Dump(m netlink.Message, fn func(m netlink.Message) error) error {
	m.Header.Flags |= netlink.Request | netlink.Dump
	seq := c.NextSeq(1)
	if err := c.Send(seq, m); err != nil {
		return err
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(Timeout)); err != nil {
		return Wrap("deadline", err)
	}
	for {
		msgs, err := c.Conn.Receive()
		var oe *netlink.OpError
		var errno unix.Errno
		switch {
		case errors.As(err, &oe) && oe.Sequence == seq && errors.As(oe.Err, &errno):
			return KernelError(uint16(m.Header.Type), errno, oe.Message)
		case errors.As(err, &oe) && oe.Sequence != 0 && oe.Sequence != seq:
			continue // an error for an earlier request
		case err != nil:
			c.broken = Wrap("recvmsg", err)
			return c.broken
		}
		ours := false
		for _, a := range msgs {
			if a.Header.Sequence != seq {
				continue
			}
			ours = true
			if err := fn(a); err != nil {
				return err
			}
		}
		if ours || len(msgs) == 0 {
			return nil
		}
	}
}

// MsgError is the kernel's answer to a failed request.
type MsgError struct {
	MsgType uint16 // netlink type of the failed message
	Errno   unix.Errno
	Text    string // extended ack
}

func (e *MsgError) Error() string {
	if e.Text == "" {
		return e.Errno.Error()
	}
	return e.Errno.Error() + " (" + e.Text + ")"
}

func (e *MsgError) Unwrap() error { return e.Errno }

// KernelError is the error for the kernel's refusal of a netfilter
// message of type typ: a *net.OpError naming the message, which unwraps
// to the errno.
func KernelError(typ uint16, errno unix.Errno, text string) error {
	op := "nftables"
	if typ>>8 == unix.NFNL_SUBSYS_ULOG {
		op = "nfnetlink_log"
	}
	return &net.OpError{Op: op, Net: "rawsock", Err: os.NewSyscallError(msgName(typ), &MsgError{MsgType: typ, Errno: errno, Text: text})}
}

// NFTType is the netlink message type of nf_tables message msg.
func NFTType(msg uint16) uint16 { return unix.NFNL_SUBSYS_NFTABLES<<8 | msg }

// nftMsgNames name the message types in errors.
var nftMsgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NFT_MSG_NEWTABLE",
	unix.NFT_MSG_GETTABLE: "NFT_MSG_GETTABLE",
	unix.NFT_MSG_DELTABLE: "NFT_MSG_DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NFT_MSG_NEWCHAIN",
	unix.NFT_MSG_NEWRULE:  "NFT_MSG_NEWRULE",
	unix.NFT_MSG_GETRULE:  "NFT_MSG_GETRULE",
}

// msgName names a netfilter message type in errors.
func msgName(typ uint16) string {
	switch typ {
	case unix.NFNL_MSG_BATCH_BEGIN:
		return "NFNL_MSG_BATCH_BEGIN"
	case unix.NFNL_MSG_BATCH_END:
		return "NFNL_MSG_BATCH_END"
	case unix.NFNL_SUBSYS_ULOG<<8 | 1: // NFULNL_MSG_CONFIG
		return "NFULNL_MSG_CONFIG"
	}
	if typ>>8 == unix.NFNL_SUBSYS_NFTABLES {
		if s, ok := nftMsgNames[typ&0xff]; ok {
			return s
		}
	}
	return fmt.Sprintf("netlink message type %#x", typ)
}

// OpError is the error of a failed system call op: a *net.OpError of
// network "rawsock" around an *os.SyscallError, which unwraps to err
// (the errno: errors.Is(err, os.ErrPermission) holds for EPERM).
func OpError(op string, err error) error {
	return &net.OpError{Op: op, Net: "rawsock", Err: os.NewSyscallError(op, err)}
}

// Htons returns v in network byte order, as the sockaddr_ll protocol
// field wants it.
func Htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
