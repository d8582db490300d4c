// Command kestrel-loadgen is the load generator of the gateway and cloud ingest benchmarks: MQTT
// clients that publish telemetry batches at QoS 1 with a window of publishes in flight (one, as a
// device waiting for each PUBACK, by default), each subscribed to its telemetry-ack topic as the
// firmware is. It is compiled so that it can drive a C broker to that broker's limit, which a Node
// load generator cannot on two cores; its own CPU use is reported with every result so that a run
// can show it was not the limit.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
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

func run(opts options) error {
	if opts.inflight < 1 || opts.samples < 1 || opts.messages < 0 {
		return fmt.Errorf("-inflight and -samples must be at least 1, -messages at least 0")
	}
	devices, err := readDevices(opts.devices)
	if err != nil {
		return err
	}
	var telemetryAcks atomic.Int64
	clients, err := connectAll(opts, devices, func(mqtt.Client, mqtt.Message) { telemetryAcks.Add(1) })
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
	if opts.messages == 0 {
		timer := time.AfterFunc(time.Duration(opts.seconds*float64(time.Second)), func() { running.Store(false) })
		defer timer.Stop()
	}
	var wg sync.WaitGroup
	for i, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			latencies[i] = publishLoop(client, devices[i].id, opts, &running, &acked, &failed)
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

// connectAll connects the clients connectBatch at a time (a burst of thousands of CONNECTs at once
// measures the broker's accept queue, not its steady state) and subscribes each to its ack topic.
func connectAll(opts options, devices []device, onAck mqtt.MessageHandler) ([]mqtt.Client, error) {
	clients := make([]mqtt.Client, len(devices))
	for from := 0; from < len(devices); from += opts.connectBatch {
		to := min(from+opts.connectBatch, len(devices))
		errs := make(chan error, to-from)
		for i := from; i < to; i++ {
			go func() {
				d := devices[i]
				o := mqtt.NewClientOptions().
					AddBroker(opts.url).
					SetClientID(d.id).
					SetCleanSession(true).
					SetAutoReconnect(false).
					SetConnectRetry(false).
					SetKeepAlive(60 * time.Second).
					SetConnectTimeout(30 * time.Second)
				if d.token != "" {
					o.SetUsername(d.id).SetPassword(d.token)
				}
				client := mqtt.NewClient(o)
				if err := wait(client.Connect()); err != nil {
					errs <- fmt.Errorf("%s: connect: %w", d.id, err)
					return
				}
				if opts.acks {
					if err := wait(client.Subscribe("d/"+d.id+"/telemetry/ack", 0, onAck)); err != nil {
						errs <- fmt.Errorf("%s: subscribe: %w", d.id, err)
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

// publishLoop publishes QoS 1 batches with up to opts.inflight awaiting their PUBACK, while running
// and, with -messages, until that many are sent; it returns once every one sent is answered.
func publishLoop(client mqtt.Client, id string, opts options, running *atomic.Bool, acked, failed *atomic.Int64) []time.Duration {
	topic := "d/" + id + "/telemetry"
	window := make(chan struct{}, opts.inflight)
	var mu sync.Mutex
	var answered sync.WaitGroup
	// A failed publish ends this client's run (its connection is gone), not the others'.
	var broken atomic.Bool
	latencies := make([]time.Duration, 0, 1024)
	for n := 0; running.Load() && !broken.Load() && (opts.messages == 0 || n < opts.messages); n++ {
		window <- struct{}{}
		started := time.Now()
		token := client.Publish(topic, 1, false, telemetry(n*opts.samples, opts.samples))
		answered.Add(1)
		go func() {
			defer answered.Done()
			err := wait(token)
			latency := time.Since(started)
			if err != nil {
				failed.Add(1)
				broken.Store(true)
			} else {
				acked.Add(1)
				mu.Lock()
				latencies = append(latencies, latency)
				mu.Unlock()
			}
			<-window
		}()
	}
	answered.Wait()
	return latencies
}

// T0 is the first sample's time; samples are 1 s apart, as a device sampling at 1 Hz.
const t0 = 1_764_000_000_000

// telemetry is a TelemetryBatch as the firmware sends it (wire/src: boot, seq, ts, m).
func telemetry(first, count int) []byte {
	b := make([]byte, 0, 48+72*count)
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

// A broker that stops answering fails the run instead of hanging it.
const answerTimeout = 60 * time.Second

func wait(token mqtt.Token) error {
	if !token.WaitTimeout(answerTimeout) {
		return fmt.Errorf("no answer within %s", answerTimeout)
	}
	return token.Error()
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

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}
