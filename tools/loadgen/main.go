// Command kestrel-loadgen is the load generator of the gateway benchmarks (gateway/bench): MQTT
// clients that publish one-sample telemetry batches at QoS 1, one publish in flight per client,
// as a device does, each subscribed to its telemetry-ack topic as the firmware is. It is compiled
// so that it can drive a C broker to that broker's limit, which a Node load generator cannot on
// two cores; its own CPU use is reported with every result so that a run can show it was not the limit.
//
// It talks to its parent on stdin/stdout, one JSON object a line: once every client is connected
// and subscribed it prints {"ready":N}; it then waits for a line on stdin and publishes for
// -seconds; last it prints the result (Result below). Several processes can share one run: each
// takes its own range of client ids (-first) and they all start on the parent's line.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Result is what one process measured over its publishing window.
type Result struct {
	Clients int `json:"clients"`
	// Publishes the broker acknowledged (PUBACK) within the window, and those it failed.
	Acked  int64 `json:"acked"`
	Errors int64 `json:"errors"`
	// Telemetry acks received on the clients' ack topics.
	TelemetryAcks int64   `json:"telemetryAcks"`
	Seconds       float64 `json:"seconds"`
	// CPU time (user + system) this process used in the window: how close to its own limit it ran.
	CPUSeconds float64 `json:"cpuSeconds"`
}

type options struct {
	url          string
	clients      int
	first        int
	seconds      float64
	token        bool
	acks         bool
	connectBatch int
	latencies    string
}

func main() {
	var opts options
	flag.StringVar(&opts.url, "url", "tcp://127.0.0.1:1883", "broker URL")
	flag.IntVar(&opts.clients, "clients", 100, "clients in this process")
	flag.IntVar(&opts.first, "first", 0, "number of this process's first client (ids bench-<first>...)")
	flag.Float64Var(&opts.seconds, "seconds", 10, "length of the publishing window")
	flag.BoolVar(&opts.token, "token", false, "authenticate as the gateway's devices: username bench-<i>, password token-<i>")
	flag.BoolVar(&opts.acks, "acks", true, "subscribe each client to d/<id>/telemetry/ack, as the firmware does")
	flag.IntVar(&opts.connectBatch, "connect-batch", 50, "clients connecting at once")
	flag.StringVar(&opts.latencies, "latencies", "", "file to write every publish's latency to (PUBLISH to PUBACK, "+
		"microseconds, uint32 little-endian), so that the parent can merge several processes' percentiles exactly")
	flag.Parse()
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "kestrel-loadgen:", err)
		os.Exit(1)
	}
}

func run(opts options) error {
	var telemetryAcks atomic.Int64
	clients, err := connectAll(opts, func(mqtt.Client, mqtt.Message) { telemetryAcks.Add(1) })
	if err != nil {
		return err
	}
	defer func() {
		for _, client := range clients {
			client.Disconnect(0)
		}
	}()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]int{"ready": len(clients)}); err != nil {
		return err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for the start line: %w", err)
	}

	var running atomic.Bool
	running.Store(true)
	var acked, failed atomic.Int64
	latencies := make([][]time.Duration, len(clients))
	cpuBefore := cpuSeconds()
	acksBefore := telemetryAcks.Load()
	started := time.Now()
	timer := time.AfterFunc(time.Duration(opts.seconds*float64(time.Second)), func() { running.Store(false) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for i, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			latencies[i] = publishLoop(client, opts.first+i, &running, &acked, &failed)
		}()
	}
	wg.Wait()
	seconds := time.Since(started).Seconds()
	cpu := cpuSeconds() - cpuBefore

	if opts.latencies != "" {
		if err := writeLatencies(opts.latencies, latencies); err != nil {
			return err
		}
	}
	return out.Encode(Result{
		Clients:       len(clients),
		Acked:         acked.Load(),
		Errors:        failed.Load(),
		TelemetryAcks: telemetryAcks.Load() - acksBefore,
		Seconds:       seconds,
		CPUSeconds:    cpu,
	})
}

func writeLatencies(path string, latencies [][]time.Duration) error {
	var b []byte
	for _, client := range latencies {
		for _, latency := range client {
			b = binary.LittleEndian.AppendUint32(b, uint32(min(latency.Microseconds(), math.MaxUint32)))
		}
	}
	return os.WriteFile(path, b, 0o644)
}

// connectAll connects the clients connectBatch at a time (a burst of thousands of CONNECTs at once
// measures the broker's accept queue, not its steady state) and subscribes each to its ack topic.
func connectAll(opts options, onAck mqtt.MessageHandler) ([]mqtt.Client, error) {
	clients := make([]mqtt.Client, opts.clients)
	for from := 0; from < opts.clients; from += opts.connectBatch {
		to := min(from+opts.connectBatch, opts.clients)
		errs := make(chan error, to-from)
		for i := from; i < to; i++ {
			go func() {
				id := "bench-" + strconv.Itoa(opts.first+i)
				o := mqtt.NewClientOptions().
					AddBroker(opts.url).
					SetClientID(id).
					SetCleanSession(true).
					SetAutoReconnect(false).
					SetConnectRetry(false).
					SetKeepAlive(60 * time.Second).
					SetConnectTimeout(30 * time.Second)
				if opts.token {
					o.SetUsername(id).SetPassword("token-" + strconv.Itoa(opts.first+i))
				}
				client := mqtt.NewClient(o)
				if err := wait(client.Connect()); err != nil {
					errs <- fmt.Errorf("%s: connect: %w", id, err)
					return
				}
				if opts.acks {
					if err := wait(client.Subscribe("d/"+id+"/telemetry/ack", 0, onAck)); err != nil {
						errs <- fmt.Errorf("%s: subscribe: %w", id, err)
						return
					}
				}
				clients[i] = client
				errs <- nil
			}()
		}
		for i := from; i < to; i++ {
			if err := <-errs; err != nil {
				return nil, err
			}
		}
	}
	return clients, nil
}

// publishLoop publishes QoS 1 one-sample batches, each after the previous one's PUBACK, while running.
func publishLoop(client mqtt.Client, n int, running *atomic.Bool, acked, failed *atomic.Int64) []time.Duration {
	topic := "d/bench-" + strconv.Itoa(n) + "/telemetry"
	latencies := make([]time.Duration, 0, 1024)
	payload := make([]byte, 0, 128)
	for seq := 0; running.Load(); seq++ {
		payload = telemetry(payload[:0], seq)
		started := time.Now()
		if err := wait(client.Publish(topic, 1, false, payload)); err != nil {
			failed.Add(1)
			return latencies
		}
		latencies = append(latencies, time.Since(started))
		acked.Add(1)
	}
	return latencies
}

// telemetry appends a one-sample TelemetryBatch as the firmware sends it (wire/src: boot, seq, ts, m).
func telemetry(b []byte, seq int) []byte {
	b = append(b, `{"v":1,"boot":1,"samples":[{"seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, 1_764_000_000_000+int64(seq), 10)
	return append(b, `,"m":{"temperature":21.5}}]}`...)
}

// A broker that stops answering fails the run instead of hanging it.
const answerTimeout = 60 * time.Second

func wait(token mqtt.Token) error {
	if !token.WaitTimeout(answerTimeout) {
		return fmt.Errorf("no answer within %s", answerTimeout)
	}
	return token.Error()
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}
