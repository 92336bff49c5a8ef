package testenv

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Channel is a plain amqp091 channel on url, for tests that talk to the
// broker as a third-party client would; closed with the test.
func Channel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
