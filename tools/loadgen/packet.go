package main

// The few MQTT 3.1.1 packets the raw client sends and reads (OASIS MQTT 3.1.1, section 2 and 3),
// encoded by appending to a caller's buffer and read from a bufio.Reader, so that a client reuses
// its buffers for every packet of a run.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Control packet types (the high nibble of the fixed header's first byte).
const (
	packetConnect    = 1
	packetConnack    = 2
	packetPublish    = 3
	packetPuback     = 4
	packetSubscribe  = 8
	packetSuback     = 9
	packetPingreq    = 12
	packetPingresp   = 13
	packetDisconnect = 14
)

// packet is one control packet read: its type, the flags of its first byte, and its variable header
// and payload. Body is valid until the next read from the same reader.
type packet struct {
	kind  byte
	flags byte
	body  []byte
}

// packetReader reads whole packets whatever the reads deliver: one split over several, or several
// in one.
type packetReader struct {
	r *bufio.Reader
	// Bodies longer than the bufio buffer are copied here (reused from one packet to the next).
	large []byte
}

func newPacketReader(r io.Reader) *packetReader {
	return &packetReader{r: bufio.NewReaderSize(r, 4096)}
}

var errMalformedLength = errors.New("malformed remaining length (more than 4 bytes)")

// read returns the next packet.
func (p *packetReader) read() (packet, error) {
	first, err := p.r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	length := 0
	for shift := 0; ; shift += 7 {
		if shift == 28 {
			return packet{}, errMalformedLength
		}
		b, err := p.r.ReadByte()
		if err != nil {
			return packet{}, unexpectedEOF(err)
		}
		length |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	out := packet{kind: first >> 4, flags: first & 0x0f}
	if length <= p.r.Size() {
		// Peek blocks until the whole body is buffered; the bytes stay valid until the next read.
		if out.body, err = p.r.Peek(length); err != nil {
			return packet{}, unexpectedEOF(err)
		}
		_, _ = p.r.Discard(length)
		return out, nil
	}
	if cap(p.large) < length {
		p.large = make([]byte, length)
	}
	out.body = p.large[:length]
	if _, err := io.ReadFull(p.r, out.body); err != nil {
		return packet{}, unexpectedEOF(err)
	}
	return out, nil
}

// A connection that ends inside a packet is not a clean end.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendHeader appends a fixed header: the first byte and the remaining length.
func appendHeader(b []byte, first byte, length int) []byte {
	b = append(b, first)
	for {
		digit := byte(length & 0x7f)
		length >>= 7
		if length > 0 {
			digit |= 0x80
		}
		b = append(b, digit)
		if length == 0 {
			return b
		}
	}
}

// appendString appends a length-prefixed UTF-8 string (section 1.5.3).
func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// appendConnect appends a CONNECT of protocol level 4 with a clean session, and the username and
// password when password is not empty.
func appendConnect(b []byte, clientID, username, password string, keepAliveSeconds uint16) []byte {
	flags := byte(0x02) // clean session
	length := 10 + 2 + len(clientID)
	if password != "" {
		flags |= 0x80 | 0x40
		length += 2 + len(username) + 2 + len(password)
	}
	b = appendHeader(b, packetConnect<<4, length)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, keepAliveSeconds)
	b = appendString(b, clientID)
	if password != "" {
		b = appendString(appendString(b, username), password)
	}
	return b
}

// appendSubscribe appends a SUBSCRIBE of one topic filter (its fixed header's flags are 0b0010).
func appendSubscribe(b []byte, packetID uint16, filter string, qos byte) []byte {
	b = appendHeader(b, packetSubscribe<<4|0x02, 2+2+len(filter)+1)
	b = binary.BigEndian.AppendUint16(b, packetID)
	return append(appendString(b, filter), qos)
}

// appendPublishQoS1 appends a QoS 1 PUBLISH of payload to topic.
func appendPublishQoS1(b []byte, topic string, packetID uint16, payload []byte) []byte {
	b = appendHeader(b, packetPublish<<4|0x02, 2+len(topic)+2+len(payload))
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint16(b, packetID)
	return append(b, payload...)
}

// appendPuback appends the PUBACK of a QoS 1 PUBLISH received.
func appendPuback(b []byte, packetID uint16) []byte {
	return binary.BigEndian.AppendUint16(append(b, packetPuback<<4, 2), packetID)
}

func appendPingreq(b []byte) []byte    { return append(b, packetPingreq<<4, 0) }
func appendDisconnect(b []byte) []byte { return append(b, packetDisconnect<<4, 0) }

// connackError is the broker's refusal of a CONNECT, by its return code (section 3.2.2.3).
func connackError(code byte) error {
	reasons := map[byte]string{
		1: "unacceptable protocol version",
		2: "identifier rejected",
		3: "server unavailable",
		4: "bad user name or password",
		5: "not authorized",
	}
	reason, known := reasons[code]
	if !known {
		reason = "unknown return code"
	}
	return fmt.Errorf("connection refused: return code %d (%s)", code, reason)
}

// packetID reads the packet identifier that starts a PUBACK's or SUBACK's variable header.
func packetID(p packet) (uint16, error) {
	if len(p.body) < 2 {
		return 0, fmt.Errorf("packet type %d of %d bytes has no packet identifier", p.kind, len(p.body))
	}
	return binary.BigEndian.Uint16(p.body), nil
}

// incomingPublish is a PUBLISH read: its topic, and its packet identifier when its QoS is above 0.
type incomingPublish struct {
	topic    []byte
	qos      byte
	packetID uint16
}

func parsePublish(p packet) (incomingPublish, error) {
	out := incomingPublish{qos: p.flags >> 1 & 0x03}
	if len(p.body) < 2 {
		return out, errors.New("PUBLISH without a topic")
	}
	end := 2 + int(binary.BigEndian.Uint16(p.body))
	if out.qos > 0 {
		end += 2
	}
	if len(p.body) < end {
		return out, errors.New("PUBLISH shorter than its topic and packet identifier")
	}
	if out.qos > 0 {
		out.topic = p.body[2 : end-2]
		out.packetID = binary.BigEndian.Uint16(p.body[end-2:])
	} else {
		out.topic = p.body[2:end]
	}
	return out, nil
}
