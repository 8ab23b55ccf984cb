package mq

import "testing"

func TestSmoke(t *testing.T) {
	b := startBroker(t, BrokerOptions{}, QueueConfig{Name: "q"})
	c := dial(t, b.socket)
	mustSend(t, c, "q", "hello")
	k := mustConsume(t, c, "q")
	d := mustReceive(t, k)
	if string(d.Body) != "hello" {
		t.Fatalf("got %q", d.Body)
	}
	if err := d.Ack(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	s := queueStats(t, b.Broker, "q")
	if s.Acked != 1 || s.Depth != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}
