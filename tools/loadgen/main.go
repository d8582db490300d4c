// Command kestrel-loadgen is the load generator of the gateway and cloud ingest benchmarks: MQTT
// clients that publish telemetry batches at QoS 1 with a window of publishes in flight (one, as a
// device waiting for each PUBACK, by default), each subscribed to its telemetry-ack topic as the
// firmware is. It is compiled so that it can drive a C broker to that broker's limit, which a Node
// load generator cannot on two cores; its own CPU use is reported with every result so that a run
// can show it was not the limit.
//
// Two MQTT clients are built in: -client=raw (raw.go, the default), MQTT 3.1.1 written directly on
// the connection, and -client=paho (paho.go), paho.mqtt.golang, kept to compare the two in one run.
//
// It talks to its parent on stdin/stdout, one JSON object a line: once every client is connected
// and subscribed it prints {"ready":N}; it then waits for a line on stdin and publishes, for
// -seconds or -messages per client; last it prints the result (Result below). Several processes
// can share one run: each gets its own devices and they all start on the parent's line.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is what one process measured over its publishing window.
type Result struct {
	Clients int `json:"clients"`
	// Publishes the broker acknowledged (PUBACK) within the window, and those that failed.
	Acked  int64 `json:"acked"`
	Errors int64 `json:"errors"`
	// Telemetry acks received on the clients' ack topics.
	TelemetryAcks int64   `json:"telemetryAcks"`
	Seconds       float64 `json:"seconds"`
	// CPU time (user + system) this process used in the window: how close to its own limit it ran.
	CPUSeconds float64 `json:"cpuSeconds"`
}

type options struct {
	client       string
	url          string
	devices      string
	seconds      float64
	messages     int
	inflight     int
	samples      int
	acks         bool
	connectBatch int
	latencies    string
}

// device is one client: its id, and its token (the MQTT password, username = id) when it has one.
type device struct {
	id    string
	token string
}

func main() {
	var opts options
	flag.StringVar(&opts.client, "client", "raw", "MQTT client: raw (this program's own) or paho (paho.mqtt.golang)")
	flag.StringVar(&opts.url, "url", "tcp://127.0.0.1:1883", "broker URL")
	flag.StringVar(&opts.devices, "devices", "", `file of the clients, one a line: "<device id>" or "<device id> <token>"`)
	flag.Float64Var(&opts.seconds, "seconds", 10, "length of the publishing window (when -messages is 0)")
	flag.IntVar(&opts.messages, "messages", 0, "publish this many messages per client, then stop (instead of -seconds)")
	flag.IntVar(&opts.inflight, "inflight", 1, "QoS 1 publishes in flight per client")
	flag.IntVar(&opts.samples, "samples", 1, "samples per telemetry batch")
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

func readDevices(path string) ([]device, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var devices []device
	for _, line := range strings.Split(string(text), "\n") {
		fields := strings.Fields(line)
		switch len(fields) {
		case 0:
		case 1:
			devices = append(devices, device{id: fields[0]})
		case 2:
			devices = append(devices, device{id: fields[0], token: fields[1]})
		default:
			return nil, fmt.Errorf("%s: %q is not <device id> [<token>]", path, line)
		}
	}
	return devices, nil
}

// client is one device's connection, whichever MQTT client it is made with.
type client interface {
	// publish runs the device's publishing window: QoS 1 telemetry with up to opts.inflight publishes
	// awaiting their PUBACK, while running and, with -messages, until that many are sent; it returns
	// once every one sent is answered or failed.
	publish(opts options, running *atomic.Bool) tally
	// ping keeps an idle connection alive while the run waits for its start.
	ping() error
	close()
}

// tally is what one client counted over the window.
type tally struct {
	acked, failed, telemetryAcks int64
	latencies                    []time.Duration
	// The failure that ended the client's window early, if one did.
	err error
}

// dialers make a connected client (subscribed to its ack topic with -acks) for each -client.
var dialers = map[string]func(options, device) (client, error){
	"raw":  dialRaw,
	"paho": dialPaho,
}

func run(opts options) error {
	if opts.inflight < 1 || opts.samples < 1 || opts.messages < 0 || opts.connectBatch < 1 {
		return fmt.Errorf("-inflight, -samples and -connect-batch must be at least 1, -messages at least 0")
	}
	if opts.inflight > maxInflight {
		return fmt.Errorf("-inflight is at most %d (MQTT packet identifiers are 16 bits)", maxInflight)
	}
	dial, known := dialers[opts.client]
	if !known {
		return fmt.Errorf("-client is raw or paho, not %q", opts.client)
	}
	devices, err := readDevices(opts.devices)
	if err != nil {
		return err
	}
	clients, err := connectAll(opts, devices, dial)
	defer func() {
		for _, client := range clients {
			if client != nil {
				client.close()
			}
		}
	}()
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]int{"ready": len(clients)}); err != nil {
		return err
	}
	if err := awaitStart(clients); err != nil {
		return err
	}

	var running atomic.Bool
	running.Store(true)
	cpuBefore := cpuSeconds()
	started := time.Now()
	if opts.messages == 0 {
		timer := time.AfterFunc(time.Duration(opts.seconds*float64(time.Second)), func() { running.Store(false) })
		defer timer.Stop()
	}
	tallies := publishAll(opts, clients, &running)
	seconds := time.Since(started).Seconds()
	cpu := cpuSeconds() - cpuBefore

	result := Result{Clients: len(clients), Seconds: seconds, CPUSeconds: cpu}
	for i, t := range tallies {
		result.Acked += t.acked
		result.Errors += t.failed
		result.TelemetryAcks += t.telemetryAcks
		if t.err != nil {
			fmt.Fprintf(os.Stderr, "kestrel-loadgen: %s: %v\n", devices[i].id, t.err)
		}
	}
	if opts.latencies != "" {
		if err := writeLatencies(opts.latencies, tallies); err != nil {
			return err
		}
	}
	return out.Encode(result)
}

// publishAll runs every client's publishing window at once, and returns what each counted.
func publishAll(opts options, clients []client, running *atomic.Bool) []tally {
	tallies := make([]tally, len(clients))
	var wg sync.WaitGroup
	for i, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tallies[i] = client.publish(opts, running)
		}()
	}
	wg.Wait()
	return tallies
}

// awaitStart waits for the parent's start line, pinging the clients meanwhile: other processes of
// the run may still be connecting theirs, for longer than a broker's keep-alive allowance.
func awaitStart(clients []client) error {
	line := make(chan error, 1)
	go func() {
		_, err := bufio.NewReader(os.Stdin).ReadString('\n')
		line <- err
	}()
	ticker := time.NewTicker(keepAliveSeconds * time.Second / 2)
	defer ticker.Stop()
	for {
		select {
		case err := <-line:
			if err != nil {
				return fmt.Errorf("waiting for the start line: %w", err)
			}
			return nil
		case <-ticker.C:
			for _, client := range clients {
				if err := client.ping(); err != nil {
					return fmt.Errorf("keeping the connections alive: %w", err)
				}
			}
		}
	}
}

// connectAll connects the clients connectBatch at a time (a burst of thousands of CONNECTs at once
// measures the broker's accept queue, not its steady state). On an error it returns that error with
// the clients connected so far, for the caller to close.
func connectAll(opts options, devices []device, dial func(options, device) (client, error)) ([]client, error) {
	clients := make([]client, len(devices))
	for from := 0; from < len(devices); from += opts.connectBatch {
		to := min(from+opts.connectBatch, len(devices))
		errs := make(chan error, to-from)
		for i := from; i < to; i++ {
			go func() {
				client, err := dial(opts, devices[i])
				if err != nil {
					err = fmt.Errorf("%s: %w", devices[i].id, err)
				}
				clients[i] = client
				errs <- err
			}()
		}
		var first error
		for i := from; i < to; i++ {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return clients, first
		}
	}
	return clients, nil
}

// A broker that stops answering fails the run instead of hanging it.
const answerTimeout = 60 * time.Second

func writeLatencies(path string, tallies []tally) error {
	var b []byte
	for _, t := range tallies {
		for _, latency := range t.latencies {
			b = binary.LittleEndian.AppendUint32(b, uint32(min(latency.Microseconds(), math.MaxUint32)))
		}
	}
	return os.WriteFile(path, b, 0o644)
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}
