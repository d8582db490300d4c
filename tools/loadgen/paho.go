package main

// The paho client (paho.mqtt.golang), the generator's first: kept so that a run can set the raw
// client's cost beside it (-client=paho). Each publish costs it a token, channels and a goroutine.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

type pahoClient struct {
	client mqtt.Client
	topic  string
	// Telemetry acks received, counted by paho's message handler.
	telemetryAcks atomic.Int64
}

func dialPaho(opts options, d device) (client, error) {
	o := mqtt.NewClientOptions().
		AddBroker(opts.url).
		SetClientID(d.id).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(keepAliveSeconds * time.Second).
		SetConnectTimeout(answerTimeout)
	if d.token != "" {
		o.SetUsername(d.id).SetPassword(d.token)
	}
	c := &pahoClient{client: mqtt.NewClient(o), topic: "d/" + d.id + "/telemetry"}
	if err := wait(c.client.Connect()); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if opts.acks {
		onAck := func(mqtt.Client, mqtt.Message) { c.telemetryAcks.Add(1) }
		if err := wait(c.client.Subscribe(c.topic+"/ack", 0, onAck)); err != nil {
			c.close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	return c, nil
}

// ping is paho's own business: it keeps the connection alive itself.
func (c *pahoClient) ping() error { return nil }

func (c *pahoClient) close() { c.client.Disconnect(0) }

func (c *pahoClient) publish(opts options, running *atomic.Bool) tally {
	window := make(chan struct{}, opts.inflight)
	var mu sync.Mutex
	var answered sync.WaitGroup
	t := tally{latencies: make([]time.Duration, 0, 1024)}
	acksBefore := c.telemetryAcks.Load()
	// A failed publish ends this client's run (its connection is gone), not the others'.
	var broken atomic.Bool
	var payload []byte
	for n := 0; running.Load() && !broken.Load() && (opts.messages == 0 || n < opts.messages); n++ {
		window <- struct{}{}
		started := time.Now()
		// Paho keeps the payload until it is sent: each publish has its own.
		payload = appendTelemetry(make([]byte, 0, len(payload)), n*opts.samples, opts.samples)
		token := c.client.Publish(c.topic, 1, false, payload)
		answered.Add(1)
		go func() {
			defer answered.Done()
			err := wait(token)
			latency := time.Since(started)
			mu.Lock()
			if err != nil {
				t.failed++
				t.err = err
				broken.Store(true)
			} else {
				t.acked++
				t.latencies = append(t.latencies, latency)
			}
			mu.Unlock()
			<-window
		}()
	}
	answered.Wait()
	t.telemetryAcks = c.telemetryAcks.Load() - acksBefore
	return t
}

func wait(token mqtt.Token) error {
	if !token.WaitTimeout(answerTimeout) {
		return fmt.Errorf("no answer within %s", answerTimeout)
	}
	return token.Error()
}
