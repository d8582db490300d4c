package main

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Three packets as a broker sends them: a PUBACK, a PUBLISH at QoS 1, a PUBLISH whose body is
// longer than the reader's buffer (a remaining length of three bytes).
func brokerBytes() (stream []byte, large []byte) {
	large = bytes.Repeat([]byte("x"), 20_000)
	stream = appendPuback(nil, 7)
	stream = appendPublishQoS1(stream, "d/a/telemetry/ack", 9, []byte(`{"seq":1}`))
	stream = appendPublishQoS1(stream, "d/a/telemetry/ack", 10, large)
	return stream, large
}

func readAll(t *testing.T, r io.Reader, large []byte) {
	t.Helper()
	reader := newPacketReader(r)
	p, err := reader.read()
	if err != nil || p.kind != packetPuback {
		t.Fatalf("first packet: %+v, %v", p, err)
	}
	if id, _ := packetID(p); id != 7 {
		t.Fatalf("PUBACK of %d, want 7", id)
	}
	for _, want := range []struct {
		id      uint16
		payload []byte
	}{{9, []byte(`{"seq":1}`)}, {10, large}} {
		p, err := reader.read()
		if err != nil || p.kind != packetPublish {
			t.Fatalf("PUBLISH %d: %+v, %v", want.id, p.kind, err)
		}
		publish, err := parsePublish(p)
		if err != nil || string(publish.topic) != "d/a/telemetry/ack" || publish.qos != 1 || publish.packetID != want.id {
			t.Fatalf("PUBLISH %d parsed as %+v, %v", want.id, publish, err)
		}
		payload := p.body[2+len(publish.topic)+2:]
		if !bytes.Equal(payload, want.payload) {
			t.Fatalf("PUBLISH %d: payload of %d bytes, want %d", want.id, len(payload), len(want.payload))
		}
	}
	if _, err := reader.read(); err != io.EOF {
		t.Fatalf("after the last packet: %v, want EOF", err)
	}
}

func TestReadsPacketsDeliveredOneByteAtATime(t *testing.T) {
	stream, large := brokerBytes()
	readAll(t, iotest.OneByteReader(bytes.NewReader(stream)), large)
}

func TestReadsSeveralPacketsDeliveredInOneRead(t *testing.T) {
	stream, large := brokerBytes()
	// bytes.Reader hands over as much as asked: the three packets arrive in the reader's first reads.
	readAll(t, bytes.NewReader(stream), large)
}

func TestRemainingLengthEncodesUpToFourBytes(t *testing.T) {
	for _, length := range []int{0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 3_000_000} {
		header := appendHeader(nil, packetPublish<<4, length)
		reader := newPacketReader(io.MultiReader(bytes.NewReader(header), io.LimitReader(zeros{}, int64(length))))
		p, err := reader.read()
		if err != nil || len(p.body) != length {
			t.Fatalf("length %d: read %d bytes, %v", length, len(p.body), err)
		}
	}
}

func TestRejectsALengthOfFiveBytes(t *testing.T) {
	reader := newPacketReader(bytes.NewReader([]byte{packetPublish << 4, 0xff, 0xff, 0xff, 0xff, 0x01}))
	if _, err := reader.read(); !errors.Is(err, errMalformedLength) {
		t.Fatalf("got %v, want %v", err, errMalformedLength)
	}
}

func TestAConnectionEndingInsideAPacketIsAnError(t *testing.T) {
	stream := appendPublishQoS1(nil, "t", 1, []byte("payload"))
	reader := newPacketReader(bytes.NewReader(stream[:len(stream)-1]))
	if _, err := reader.read(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

func TestConnectCarriesTheCredentialsOnlyWithAToken(t *testing.T) {
	anonymous := appendConnect(nil, "dev-1", "dev-1", "", 60)
	want := []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 5, 'd', 'e', 'v', '-', '1'}
	if !bytes.Equal(anonymous, want) {
		t.Fatalf("CONNECT % x, want % x", anonymous, want)
	}
	withToken := appendConnect(nil, "dev-1", "dev-1", "tok", 60)
	if withToken[9] != 0xc2 || !bytes.HasSuffix(withToken, []byte{0, 5, 'd', 'e', 'v', '-', '1', 0, 3, 't', 'o', 'k'}) {
		t.Fatalf("CONNECT with a token: % x", withToken)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
