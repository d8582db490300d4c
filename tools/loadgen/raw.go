package main

// The raw client: MQTT 3.1.1 written directly on a TCP connection, one goroutine per client that
// writes its window of publishes in one write and then reads until a PUBACK frees a place in it.
// A message costs it one write and one read, as it costs the broker: 10-13 µs of CPU on the
// benchmark machine, a third to a half of what paho's token, channels and goroutine per publish cost
// (docs/benchmarks.md), so that the generator takes no more of the machine than the broker under test.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// The largest window: packet identifiers are 16 bits and 0 is not one.
const maxInflight = 65_535

const keepAliveSeconds = 60

type rawClient struct {
	conn     net.Conn
	reader   *packetReader
	topic    string
	ackTopic string
	// The next packet's bytes (several publishes go out in one write) and the payload being encoded.
	out     []byte
	payload []byte
	// Read deadline currently set: renewed while the broker answers, so one that stops fails the run.
	deadline time.Time
}

// dialRaw connects the device (CONNECT, CONNACK) and, with -acks, subscribes it to its ack topic.
func dialRaw(opts options, d device) (client, error) {
	address, err := brokerAddress(opts.url)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", address, answerTimeout)
	if err != nil {
		return nil, err
	}
	c := &rawClient{
		conn:     conn,
		reader:   newPacketReader(conn),
		topic:    "d/" + d.id + "/telemetry",
		ackTopic: "d/" + d.id + "/telemetry/ack",
	}
	if err := c.handshake(opts, d); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// brokerAddress is the host:port of a tcp:// or mqtt:// URL (1883 when it names none).
func brokerAddress(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "mqtt") || u.Hostname() == "" {
		return "", fmt.Errorf("-url %q: the raw client takes tcp://host:port", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "1883"), nil
	}
	return u.Host, nil
}

func (c *rawClient) handshake(opts options, d device) error {
	c.out = appendConnect(c.out[:0], d.id, d.id, d.token, keepAliveSeconds)
	if err := c.flush(); err != nil {
		return err
	}
	connack, err := c.expect(packetConnack)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if len(connack.body) != 2 {
		return fmt.Errorf("connect: CONNACK of %d bytes", len(connack.body))
	}
	if code := connack.body[1]; code != 0 {
		return fmt.Errorf("connect: %w", connackError(code))
	}
	if !opts.acks {
		return nil
	}
	c.out = appendSubscribe(c.out, 1, c.ackTopic, 0)
	if err := c.flush(); err != nil {
		return err
	}
	suback, err := c.expect(packetSuback)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if id, err := packetID(suback); err != nil || id != 1 || len(suback.body) != 3 {
		return fmt.Errorf("subscribe: unexpected SUBACK % x", suback.body)
	}
	if granted := suback.body[2]; granted != 0 {
		return fmt.Errorf("subscribe: refused %s (return code %#x)", c.ackTopic, granted)
	}
	return nil
}

// expect reads the next packet, which must be of this kind.
func (c *rawClient) expect(kind byte) (packet, error) {
	p, err := c.readPacket()
	if err == nil && p.kind != kind {
		err = fmt.Errorf("expected packet type %d, got %d", kind, p.kind)
	}
	return p, err
}

func (c *rawClient) readPacket() (packet, error) {
	// Renewing the deadline costs a timer update, so it is done only once it is half spent.
	if now := time.Now(); c.deadline.Sub(now) < answerTimeout/2 {
		c.deadline = now.Add(answerTimeout)
		if err := c.conn.SetReadDeadline(c.deadline); err != nil {
			return packet{}, err
		}
	}
	return c.reader.read()
}

func (c *rawClient) flush() error {
	_, err := c.conn.Write(c.out)
	c.out = c.out[:0]
	return err
}

func (c *rawClient) ping() error {
	c.out = appendPingreq(c.out[:0])
	return c.flush()
}

func (c *rawClient) close() {
	c.out = appendDisconnect(c.out[:0])
	_ = c.flush()
	c.conn.Close()
}

// publish sends QoS 1 telemetry with up to opts.inflight publishes awaiting their PUBACK, while
// running and, with -messages, until that many are sent; it returns once every one sent is
// answered, or at the first error (the connection is then of no more use: what was in flight fails).
func (c *rawClient) publish(opts options, running *atomic.Bool) tally {
	t := tally{latencies: make([]time.Duration, 0, 1024)}
	// Packet identifiers 1..inflight, each reused once its PUBACK is in, with its publish's time.
	free := make([]uint16, opts.inflight)
	for i := range free {
		free[i] = uint16(opts.inflight - i)
	}
	sent := make([]time.Time, opts.inflight+1)
	inflight := 0
	for n := 0; ; {
		for len(free) > 0 && running.Load() && (opts.messages == 0 || n < opts.messages) {
			id := free[len(free)-1]
			free = free[:len(free)-1]
			c.payload = appendTelemetry(c.payload[:0], n*opts.samples, opts.samples)
			c.out = appendPublishQoS1(c.out, c.topic, id, c.payload)
			sent[id] = time.Now()
			inflight++
			n++
		}
		if len(c.out) > 0 {
			if err := c.flush(); err != nil {
				return c.fail(t, inflight, err)
			}
		}
		if inflight == 0 {
			return t
		}
		p, err := c.readPacket()
		if err != nil {
			return c.fail(t, inflight, err)
		}
		switch p.kind {
		case packetPuback:
			id, err := packetID(p)
			if err == nil && (id == 0 || int(id) > opts.inflight || sent[id].IsZero()) {
				err = fmt.Errorf("PUBACK of packet %d, which is not in flight", id)
			}
			if err != nil {
				return c.fail(t, inflight, err)
			}
			t.latencies = append(t.latencies, time.Since(sent[id]))
			sent[id] = time.Time{}
			free = append(free, id)
			inflight--
			t.acked++
		case packetPublish:
			if err := c.received(p, &t); err != nil {
				return c.fail(t, inflight, err)
			}
		case packetPingresp:
		default:
			return c.fail(t, inflight, fmt.Errorf("unexpected packet type %d", p.kind))
		}
	}
}

// received counts a PUBLISH on the ack topic as a telemetry ack, and acknowledges one sent at QoS 1.
func (c *rawClient) received(p packet, t *tally) error {
	publish, err := parsePublish(p)
	if err != nil {
		return err
	}
	if string(publish.topic) == c.ackTopic {
		t.telemetryAcks++
	}
	switch publish.qos {
	case 0:
	case 1:
		c.out = appendPuback(c.out, publish.packetID)
	default:
		return errors.New("PUBLISH at QoS 2, which the load generator does not subscribe to")
	}
	return nil
}

// fail counts what was in flight as failed and reports the first failure of the run.
func (c *rawClient) fail(t tally, inflight int, err error) tally {
	t.failed += int64(inflight)
	t.err = err
	return t
}

// T0 is the first sample's time; samples are 1 s apart, as a device sampling at 1 Hz.
const t0 = 1_764_000_000_000

// appendTelemetry appends a TelemetryBatch as the firmware sends it (wire/src: boot, seq, ts, m).
func appendTelemetry(b []byte, first, count int) []byte {
	b = append(b, `{"v":1,"boot":1,"samples":[`...)
	for seq := first; seq < first+count; seq++ {
		if seq > first {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`...)
		b = strconv.AppendInt(b, int64(seq), 10)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, t0+int64(seq)*1000, 10)
		b = append(b, `,"m":{"temperature":21.5}}`...)
	}
	return append(b, `]}`...)
}
