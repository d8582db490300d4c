package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Debian puts the broker in /usr/sbin (tools/scripts/setup.sh installs it).
const mosquittoPath = "/usr/sbin/mosquitto"

// startMosquitto runs Debian's mosquitto on a free loopback port, anonymous, and returns its URL.
func startMosquitto(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	config := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_connections -1\n", port)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := exec.Command(mosquittoPath, "-c", config)
	if err := broker.Start(); err != nil {
		t.Fatalf("starting %s (tools/scripts/setup.sh installs it): %v", mosquittoPath, err)
	}
	t.Cleanup(func() {
		_ = broker.Process.Kill()
		_ = broker.Wait()
	})
	address := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.Dial("tcp", address); err == nil {
			conn.Close()
			return "tcp://" + address
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not open %s", address)
		}
	}
}

// connectAndPublish connects the devices with the raw client and runs their publishing window.
func connectAndPublish(t *testing.T, opts options, devices []device) []tally {
	t.Helper()
	clients, err := connectAll(opts, devices, dialRaw)
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var running atomic.Bool
	running.Store(true)
	return publishAll(opts, clients, &running)
}

func TestEveryPublishToMosquittoIsAcknowledged(t *testing.T) {
	url := startMosquitto(t)
	for _, inflight := range []int{1, 8} {
		t.Run(fmt.Sprintf("inflight %d", inflight), func(t *testing.T) {
			devices := make([]device, 50)
			for i := range devices {
				devices[i] = device{id: fmt.Sprintf("dev-%d-%d", inflight, i)}
			}
			opts := options{url: url, messages: 200, inflight: inflight, samples: 3, acks: true, connectBatch: 20}
			for i, got := range connectAndPublish(t, opts, devices) {
				if got.err != nil || got.failed != 0 || got.acked != 200 || len(got.latencies) != 200 {
					t.Fatalf("%s: acked %d, failed %d, %d latencies, %v", devices[i].id, got.acked, got.failed, len(got.latencies), got.err)
				}
				for _, latency := range got.latencies {
					if latency <= 0 {
						t.Fatalf("%s: latency %s", devices[i].id, latency)
					}
				}
			}
		})
	}
}

// scriptedBroker accepts one connection and runs script on it, reporting its failure to the test.
func scriptedBroker(t *testing.T, script func(conn net.Conn, in *packetReader) error) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		conn, err := listener.Accept()
		listener.Close()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- script(conn, newPacketReader(conn))
	}()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Error("broker:", err)
		}
	})
	return "tcp://" + listener.Addr().String()
}

func expectPacket(in *packetReader, kind byte) (packet, error) {
	p, err := in.read()
	if err == nil && p.kind != kind {
		err = fmt.Errorf("got packet type %d, want %d", p.kind, kind)
	}
	return p, err
}

// writeBytewise sends b one byte a write, so the client reads packets split across reads.
func writeBytewise(conn net.Conn, b []byte) error {
	for i := range b {
		if _, err := conn.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

func TestAnswersOutOfOrderPubacksAndAQoS1Ack(t *testing.T) {
	url := scriptedBroker(t, func(conn net.Conn, in *packetReader) error {
		connect, err := expectPacket(in, packetConnect)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(string(connect.body), "\x00\x03dev\x00\x03dev\x00\x05token") {
			return fmt.Errorf("CONNECT without the device's credentials: %q", connect.body)
		}
		if err := writeBytewise(conn, []byte{packetConnack << 4, 2, 0, 0}); err != nil {
			return err
		}
		if _, err := expectPacket(in, packetSubscribe); err != nil {
			return err
		}
		if err := writeBytewise(conn, []byte{packetSuback << 4, 3, 0, 1, 0}); err != nil {
			return err
		}
		// Both publishes of the window, then their PUBACKs in the other order, coalesced with a QoS 1
		// ack and split byte by byte.
		var ids []uint16
		for range 2 {
			p, err := expectPacket(in, packetPublish)
			if err != nil {
				return err
			}
			publish, err := parsePublish(p)
			if err != nil || string(publish.topic) != "d/dev/telemetry" || publish.qos != 1 {
				return fmt.Errorf("PUBLISH %+v, %v", publish, err)
			}
			ids = append(ids, publish.packetID)
		}
		answer := appendPublishQoS1(nil, "d/dev/telemetry/ack", 77, []byte(`{"seq":1}`))
		answer = appendPuback(answer, ids[1])
		answer = appendPuback(answer, ids[0])
		if err := writeBytewise(conn, answer); err != nil {
			return err
		}
		puback, err := expectPacket(in, packetPuback)
		if err != nil {
			return err
		}
		if id, _ := packetID(puback); id != 77 {
			return fmt.Errorf("PUBACK of %d, want 77", id)
		}
		_, err = expectPacket(in, packetDisconnect)
		return err
	})
	got := connectAndPublish(t, options{url: url, messages: 2, inflight: 2, samples: 1, acks: true, connectBatch: 1},
		[]device{{id: "dev", token: "token"}})[0]
	if got.err != nil || got.acked != 2 || got.failed != 0 || got.telemetryAcks != 1 || len(got.latencies) != 2 {
		t.Fatalf("acked %d, failed %d, telemetry acks %d, %d latencies, %v",
			got.acked, got.failed, got.telemetryAcks, len(got.latencies), got.err)
	}
}

func TestARefusedConnectFailsWithItsReturnCode(t *testing.T) {
	url := scriptedBroker(t, func(conn net.Conn, in *packetReader) error {
		if _, err := expectPacket(in, packetConnect); err != nil {
			return err
		}
		_, err := conn.Write([]byte{packetConnack << 4, 2, 0, 5})
		return err
	})
	_, err := dialRaw(options{url: url, acks: true}, device{id: "dev", token: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "return code 5 (not authorized)") {
		t.Fatalf("got %v, want a refusal with return code 5", err)
	}
}

func TestAPubackOfAnUnknownPacketFailsTheWindow(t *testing.T) {
	url := scriptedBroker(t, func(conn net.Conn, in *packetReader) error {
		if _, err := expectPacket(in, packetConnect); err != nil {
			return err
		}
		if _, err := conn.Write([]byte{packetConnack << 4, 2, 0, 0}); err != nil {
			return err
		}
		if _, err := expectPacket(in, packetPublish); err != nil {
			return err
		}
		_, err := conn.Write(appendPuback(nil, 999))
		return err
	})
	got := connectAndPublish(t, options{url: url, messages: 1, inflight: 1, samples: 1, connectBatch: 1}, []device{{id: "dev"}})[0]
	if got.failed != 1 || got.err == nil || !strings.Contains(got.err.Error(), "not in flight") {
		t.Fatalf("failed %d, %v; want the publish failed by a PUBACK of packet 999", got.failed, got.err)
	}
}
